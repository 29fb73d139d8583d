"""whatsray: WhatsApp agentic bots on Ray. This package is the Ray-free core."""

__version__ = "0.1.0"
