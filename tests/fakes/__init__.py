"""Local fake services for archbot's tests (real SDK clients talk to these over HTTP/WebSocket).

``from tests.fakes import FakeSlack, event_callback, mention_event, post_event, sign``.
The API is documented in ``tests/fakes/slack.py`` (server, payload builders) and
``tests/fakes/signing.py`` (HTTP-mode signing and posting).
"""

from tests.fakes.signing import (
    events_url,
    post_event,
    post_interactive,
    post_signed,
    post_slash_command,
    sign,
)
from tests.fakes.slack import (
    Ack,
    Call,
    Envelope,
    Ephemeral,
    FailureRule,
    FakeSlack,
    StoredMessage,
    app_home_opened_event,
    assistant_thread_started_event,
    block_actions_payload,
    default_scopes,
    event_callback,
    mention_event,
    message_changed_event,
    message_deleted_event,
    message_event,
    new_event_id,
    new_trigger_id,
    rich_text_blocks,
    slash_command_payload,
    url_verification_payload,
    validate_blocks,
    validate_view,
    view_submission_payload,
)

__all__ = [
    "Ack",
    "Call",
    "Envelope",
    "Ephemeral",
    "FailureRule",
    "FakeSlack",
    "StoredMessage",
    "app_home_opened_event",
    "assistant_thread_started_event",
    "block_actions_payload",
    "default_scopes",
    "event_callback",
    "events_url",
    "mention_event",
    "message_changed_event",
    "message_deleted_event",
    "message_event",
    "new_event_id",
    "new_trigger_id",
    "post_event",
    "post_interactive",
    "post_signed",
    "post_slash_command",
    "rich_text_blocks",
    "sign",
    "slash_command_payload",
    "url_verification_payload",
    "validate_blocks",
    "validate_view",
    "view_submission_payload",
]
