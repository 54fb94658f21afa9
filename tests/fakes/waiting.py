"""How long a test waits for a condition by default.

Generous on purpose: it only matters when the condition never comes, and a shared 2-core CI
machine can take seconds to start a bot under load. Tests that expect a timeout pass their own.
"""

WAIT_SECONDS = 15.0
