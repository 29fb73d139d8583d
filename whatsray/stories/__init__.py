"""Conversation tests (`whatsray test`, docs/stories.md): story files (`model`), the runner
(`runner`), its target (`target`: a platform's emulator and admin API, over HTTP or in this
process, whatsray/in_process.py) and the report (`report`)."""
