"""What the node says and hears, per language: its own phrases (``phrases``), text as each voice reads it
(``speech_text``) and Chinese numerals (``numbers_zh``)."""
