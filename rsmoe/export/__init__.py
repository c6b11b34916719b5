"""ONNX export of the frozen encoders and their ONNX Runtime serving.

    export_encoders(model, out_dir)            image_encoder.onnx, vlm_encoder.onnx, encoders.json
    check_parity(model, out_dir, images)       ONNX Runtime vs PyTorch -> parity.json (ParityError)
    session(path, prefer=(...))                an InferenceSession on the first provider that works
    encode_images(onnx_path, images)           batched features of image files, bad files reported
    save_features(path, features)              features -> safetensors
"""
from rsmoe.export.onnx_export import ParityError, check_parity, export_encoders, merged_copy
from rsmoe.export.ort import encode_images, read_sidecar, run, save_features, session

__all__ = ["export_encoders", "check_parity", "ParityError", "merged_copy", "session", "run", "read_sidecar",
           "encode_images", "save_features"]
