"""The admin REST API (Ray-free): a FastAPI router that the ingress mounts under `/api`.

See docs/admin-api.md. `create_admin_router(...)` takes the store and the outboxes through the
ports in `whatsray.admin.ports`.
"""

from __future__ import annotations

from whatsray.admin.api import AdminProblem, create_admin_router, idempotent_outbound_id
from whatsray.admin.auth import AuthFailure, BearerAuth
from whatsray.admin.models import (
    ChatOut,
    ChatsPage,
    ContactOut,
    ContactsPage,
    DeadLetterOut,
    DeadLettersPage,
    ErrorBody,
    FieldError,
    HandoffChatsOut,
    MessageOut,
    MessagesPage,
    OutboundOut,
    SendMessageRequest,
    SendMessageResponse,
    normalize_user,
)
from whatsray.admin.ports import AdminInboxPort, AdminOutboxPort, AdminStorePort, HandoffControl

__all__ = [
    "AdminInboxPort",
    "AdminOutboxPort",
    "AdminProblem",
    "AdminStorePort",
    "AuthFailure",
    "BearerAuth",
    "ChatOut",
    "ChatsPage",
    "ContactOut",
    "ContactsPage",
    "DeadLetterOut",
    "DeadLettersPage",
    "ErrorBody",
    "FieldError",
    "HandoffChatsOut",
    "HandoffControl",
    "MessageOut",
    "MessagesPage",
    "OutboundOut",
    "SendMessageRequest",
    "SendMessageResponse",
    "create_admin_router",
    "idempotent_outbound_id",
    "normalize_user",
]
