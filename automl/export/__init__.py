"""The hand-off: TorchScript, ONNX and labels files with preprocessing built in, and predicting with
an exported model (no automl internals needed at that end)."""
