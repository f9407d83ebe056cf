"""Engines that both tiers run: the edge's ASR is also the cloud ASR worker's (Whisper, or SenseVoice and
Paraformer through sherpa-onnx), so it lives here and ``cloud/`` never imports ``edge_node/``."""
