"""Conversation tests (`whatsray test`, docs/stories.md): story files (`model`), the runner
(`runner`), its targets (`target`: over HTTP; `inprocess`: the platform in this process) and the
report (`report`)."""
