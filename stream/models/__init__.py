"""The model suite: the manifest contract, verified ONNX sessions, the encoder, the heads, the
language model, and champion/challenger (shadow) monitoring."""
