"""A trained run's feature extractor as ONNX: normalised images in, the features ``reidkit eval`` uses out."""
from __future__ import annotations

from pathlib import Path

from reidkit.errors import ReidkitError

MISSING = "ONNX export needs the onnx extra: pip install 'reidkit[onnx]' (onnx, onnxscript; onnxruntime to verify)"


def feature_graph(model, flip: bool):
    """The run's backbone as a module: BNNeck features, optionally averaged with the mirrored image (as evaluation does)."""
    import torch

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = model.backbone

        def forward(self, images):
            f = self.backbone(images)[1]
            return (f + self.backbone(torch.flip(images, dims=[3]))[1]) / 2 if flip else f

    return Features().eval()


def export_onnx(run_dir, out, flip=True, opset=18) -> dict:
    """Write ``out`` (dynamic batch) and return its metadata; the run's model is loaded on the CPU."""
    import importlib.util

    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxscript") is None:
        raise ReidkitError(MISSING)
    import warnings

    import torch

    from reidkit.evaluation.inference import load_reid_model
    from reidkit.store.atomic import atomic_output
    from reidkit.training.data import MEAN, STD

    runner = load_reid_model(run_dir, "cpu")
    graph = feature_graph(runner.model, flip)
    example = torch.zeros(2, 3, runner.height, runner.width)
    meta = {
        "input": f"images: N x 3 x {runner.height} x {runner.width} float32, RGB in [0, 1] minus mean, over std",
        "mean": ",".join(f"{m:.3f}" for m in MEAN), "std": ",".join(f"{s:.3f}" for s in STD),
        "resize": runner.kernel,  # resize images to the input size as the run did (reidkit.training.resizing)
        "output": "features: N x D float32 (after the BNNeck" + (", averaged with the mirrored image)" if flip else ")"),
        "strategy": str(runner.config.get("strategy")), "backbone": str(runner.config["backbone"].get("model")),
        "store_fingerprint": str(runner.config.get("store_fingerprint")), "run": Path(run_dir).resolve().name,
    }
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with warnings.catch_warnings():  # the exporter's notes on its own internals are not the user's concern
            warnings.simplefilter("ignore")
            program = torch.onnx.export(graph, (example,), input_names=["images"], output_names=["features"],
                                        dynamic_shapes={"images": {0: batch}}, opset_version=opset, dynamo=True,
                                        verbose=False)
    except Exception as exc:  # the exporter's failures are long; one line says what and with which versions
        import onnxscript

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ReidkitError(f"torch {torch.__version__} with onnxscript {onnxscript.__version__} could not export the model "
                           f"({first}); export is tested with the versions in constraints.txt (torch 2.14)") from None
    import onnx

    model = program.model_proto
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    with atomic_output(Path(out), replace=True) as partial:
        onnx.save_model(model, str(partial))
    return meta


def compare_with_torch(run_dir, onnx_path, flip=True, batch=3, seed=0) -> float:
    """Largest absolute difference between onnxruntime's and PyTorch's features on a random normalised batch."""
    import numpy as np
    import onnxruntime
    import torch

    from reidkit.evaluation.inference import load_reid_model

    runner = load_reid_model(run_dir, "cpu")
    images = np.random.default_rng(seed).standard_normal((batch, 3, runner.height, runner.width)).astype(np.float32)
    with torch.inference_mode():
        expected = feature_graph(runner.model, flip)(torch.from_numpy(images)).numpy()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["features"], {"images": images})[0]
    return float(np.abs(got - expected).max())
