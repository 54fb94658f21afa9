"""A plain Bolt bot, the baseline the benchmarks compare archbot with: ack, call the model, stream.

No store, no queue, no limit, no retrieval: the shape of Slack's AI app templates. A mention is
acked at once (Bolt's default for HTTP: the listener runs after the ack), the model is called with
the mention's text, and its words are streamed into the thread with `chat_stream` (flushing each
delta, as early as archbot shows its first words). A failed model call posts a short error in the
thread, so the benchmark can count failures.

    SLACK_BOT_TOKEN=… SLACK_SIGNING_SECRET=… SLACK_API_URL=… ANTHROPIC_API_KEY=… ANTHROPIC_BASE_URL=… \\
        python bench/template_bot.py PORT
"""

from __future__ import annotations

import logging
import os
import sys

from anthropic import AsyncAnthropic
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

ERROR_TEXT = "Sorry, something went wrong."


def build() -> AsyncApp:
    client = AsyncWebClient(token=os.environ["SLACK_BOT_TOKEN"], base_url=os.environ["SLACK_API_URL"])
    app = AsyncApp(client=client, signing_secret=os.environ["SLACK_SIGNING_SECRET"])
    model = AsyncAnthropic(api_key=os.environ["ANTHROPIC_API_KEY"], base_url=os.environ["ANTHROPIC_BASE_URL"])

    @app.event("app_mention")
    async def on_mention(event: dict, client: AsyncWebClient) -> None:
        thread_ts = event.get("thread_ts") or event["ts"]
        try:
            streamer = await client.chat_stream(
                channel=event["channel"],
                thread_ts=thread_ts,
                recipient_team_id=event.get("team"),
                recipient_user_id=event.get("user"),
                buffer_size=1,
            )
            async with model.messages.stream(
                model=os.environ.get("ARCHBOT_MODEL", "claude-sonnet-5-5"),
                max_tokens=1024,
                messages=[{"role": "user", "content": event.get("text") or "hello"}],
            ) as stream:
                async for text in stream.text_stream:
                    if text:
                        await streamer.append(markdown_text=text)
            await streamer.stop()
        except Exception:
            logging.getLogger(__name__).warning("answer failed", exc_info=True)
            await client.chat_postMessage(channel=event["channel"], thread_ts=thread_ts, text=ERROR_TEXT)

    @app.event("message")
    async def on_message() -> None:
        return None

    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    build().start(port=int(sys.argv[1]))
