"""Which weights and how they load: the registry of published files, the model folder and downloads, ONNX
Runtime sessions, fp16 and INT8 variants, and how far one model's output is from another's."""
