"""Meta's numeric limits for the WhatsApp Cloud API, in one place.

Both the outbound validation (`messages.py`) and the emulator read these, so the client and the
emulator can never disagree. Sources are named per group; "ref §N" is section N of
`reference/whatsapp-cloud-api.md`, which quotes Meta's pages.
"""

from __future__ import annotations

# --- Message bodies (ref §5, "Send API"; Meta: messages/*) ----------------------------------

MAX_TEXT_BODY_CHARS = 4096  # Meta: messages/text-messages
MAX_CALLBACK_DATA_CHARS = 512  # biz_opaque_callback_data (Meta: messages/send-messages)
# Captions on image/video/document (Meta: messages/image-messages; not quoted in ref §5).
MAX_MEDIA_CAPTION_CHARS = 1024
MAX_TEMPLATE_NAME_CHARS = 512  # Meta: templates/overview (not quoted in ref §5)

# Interactive reply buttons (ref §5; lengths as enforced by whatsapp-api-js).
MAX_REPLY_BUTTONS = 3
MAX_BUTTON_ID_CHARS = 256
MAX_BUTTON_TITLE_CHARS = 20
MAX_BUTTONS_BODY_CHARS = 1024

# Interactive lists (ref §5; Meta: messages/interactive-list-messages).
MAX_LIST_BUTTON_CHARS = 20
MAX_LIST_SECTIONS = 10
MAX_LIST_ROWS = 10  # rows across all sections together
MAX_LIST_ROW_ID_CHARS = 200
MAX_LIST_ROW_TITLE_CHARS = 24
MAX_LIST_ROW_DESCRIPTION_CHARS = 72
MAX_LIST_SECTION_TITLE_CHARS = 24  # and required when there is more than one section
MAX_LIST_BODY_CHARS = 4096  # Meta: messages/interactive-list-messages (not quoted in ref §5)

# Both interactive kinds.
MAX_INTERACTIVE_HEADER_CHARS = 60
MAX_INTERACTIVE_FOOTER_CHARS = 60

# Typing indicator disappears after this unless a reply is sent (ref §5, Meta: typing-indicators).
TYPING_INDICATOR_SECONDS = 25.0

# --- Throughput, pair rate, windows (ref §7; Meta: throughput, about-the-platform) ------------

DEFAULT_THROUGHPUT_MPS = 80  # messages per second per business number, in + out
MAX_THROUGHPUT_MPS = 1000  # after Meta's automatic upgrade
COEXISTENCE_THROUGHPUT_MPS = 20  # numbers shared with the WhatsApp Business app
PAIR_RATE_INTERVAL_SECONDS = 6.0  # one message per 6 s to the same user...
PAIR_RATE_BURST = 45  # ...with bursts of up to 45 that borrow future quota
CUSTOMER_SERVICE_WINDOW_SECONDS = 24 * 3600  # free-form messages only inside it (else 131047)

# --- Media (ref §8; Meta: business-phone-numbers/media) -------------------------------------

MEDIA_URL_TTL_SECONDS = 300  # a URL from GET /{media_id} expires after 5 minutes
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_AUDIO_BYTES = 16 * 1024 * 1024
MAX_VIDEO_BYTES = 16 * 1024 * 1024
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
MAX_STATIC_STICKER_BYTES = 100 * 1024
MAX_ANIMATED_STICKER_BYTES = 500 * 1024
