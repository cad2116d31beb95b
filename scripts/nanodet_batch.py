#!/usr/bin/env python3
"""Make NanoDet-m 416 batch-capable, and prove it.

The shipped `nanodet-m-416.onnx` (tf2onnx from a TF.js graph) has a static batch of 1, and the
shape fed to each of its six output Reshapes is computed by a small sub-graph (SparseToDense,
Expand, Cast) that bakes in batch 1. This script:

1. marks the batch dimension of the input and of the six outputs symbolic (`batch`);
2. replaces each output Reshape's computed shape with a constant `[0, C, -1]` (0 copies the batch
   dimension of the Reshape's input; C is 80 class scores or 44 box bins; -1 the cells);
3. drops the nodes and initializers nothing reads any more, and checks the model;
4. verifies: for batches of 4 and 8 real frames of bikes.mp4, every sample's six outputs equal a
   batch-1 run of the ORIGINAL model on the same frame (max abs difference printed, must be <=1e-4).

Usage: scripts/nanodet_batch.py SRC.onnx DST.onnx FOOTAGE.mp4   (needs `onnx`, `onnxruntime`,
`numpy` and ffmpeg). Exits non-zero and writes nothing when verification fails.
"""

import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

SIZE = 416
MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
TOLERANCE = 1e-4


def make_batch_capable(model: onnx.ModelProto) -> onnx.ModelProto:
    g = model.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    for o in g.output:
        o.type.tensor_type.shape.dim[0].dim_param = "batch"
    del g.value_info[:]  # stale static shapes; ONNX Runtime infers them again

    out_channels = {}
    for n in g.node:
        if n.op_type == "Transpose" and n.output[0] in {o.name for o in g.output}:
            out_channels[n.input[0]] = n.output[0]
    replaced = 0
    for n in g.node:
        if n.op_type != "Reshape" or n.output[0] not in out_channels:
            continue
        # The Reshape reads the head's [N, C, H, W]; C is 80 (scores) or 44 (box bins).
        channels = 80 if "Sigmoid" in n.input[0] else 44
        name = f"batch_shape_{channels}"
        if name not in {i.name for i in g.initializer}:
            g.initializer.append(
                numpy_helper.from_array(np.array([0, channels, -1], dtype=np.int64), name)
            )
        n.input[1] = name
        replaced += 1
    if replaced != 6:
        raise SystemExit(f"expected 6 output Reshapes, found {replaced}")

    # Drop what no longer feeds an output.
    needed = {o.name for o in g.output}
    keep = []
    for n in reversed(list(g.node)):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(i for i in n.input if i)
    dropped = len(g.node) - len(keep)
    keep.reverse()
    del g.node[:]
    g.node.extend(keep)
    inits = [i for i in g.initializer if i.name in needed]
    del g.initializer[:]
    g.initializer.extend(inits)
    print(f"replaced {replaced} reshape shapes, dropped {dropped} dead nodes")
    onnx.checker.check_model(model)
    return model


def frames(footage: str, count: int) -> list[np.ndarray]:
    """`count` distinct letterboxed, normalised NCHW frames from the clip."""
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", footage, "-vf", "fps=2", "-frames:v", str(count),
         "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        check=True, capture_output=True,
    ).stdout
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", footage],
        check=True, capture_output=True, text=True,
    ).stdout.strip().split(",")
    w, h = int(probe[0]), int(probe[1])
    imgs = np.frombuffer(out, dtype=np.uint8).reshape(-1, h, w, 3)
    scale = min(SIZE / w, SIZE / h)
    nw, nh = round(w * scale), round(h * scale)
    ys = np.minimum((np.arange(nh) + 0.5) / scale, h - 1).astype(int)
    xs = np.minimum((np.arange(nw) + 0.5) / scale, w - 1).astype(int)
    result = []
    for img in imgs:
        canvas = np.zeros((SIZE, SIZE, 3), dtype=np.float32)
        top, left = (SIZE - nh) // 2, (SIZE - nw) // 2
        canvas[top:top + nh, left:left + nw] = img[ys][:, xs]
        norm = (canvas - MEAN) / STD
        result.append(norm.transpose(2, 0, 1)[None].astype(np.float32))
    if len(result) < count:
        raise SystemExit(f"only {len(result)} frames in {footage}")
    return result


def verify(original: bytes, batched: bytes, footage: str) -> float:
    opts = ort.SessionOptions()
    single = ort.InferenceSession(original, opts, providers=["CPUExecutionProvider"])
    multi = ort.InferenceSession(batched, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in single.get_outputs()]
    inp = single.get_inputs()[0].name
    imgs = frames(footage, 8)
    reference = [single.run(names, {inp: x}) for x in imgs]
    worst = 0.0
    for batch in (1, 4, 8):
        out = multi.run(names, {inp: np.concatenate(imgs[:batch])})
        for k, name in enumerate(names):
            if out[k].shape[0] != batch:
                raise SystemExit(f"{name}: batch {batch} gave shape {out[k].shape}")
            for s in range(batch):
                diff = float(np.abs(out[k][s] - reference[s][k][0]).max())
                worst = max(worst, diff)
        print(f"batch {batch}: every sample vs batch-1 runs, max abs diff so far {worst:.3g}")
    return worst


def main() -> None:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    src, dst, footage = sys.argv[1:]
    model = onnx.load(src)
    original = model.SerializeToString()
    batched = make_batch_capable(model).SerializeToString()
    worst = verify(original, batched, footage)
    if worst > TOLERANCE:
        raise SystemExit(f"NOT batch-capable: max abs diff {worst} > {TOLERANCE}")
    with open(dst, "wb") as f:
        f.write(batched)
    print(f"verified (max abs diff {worst:.3g} <= {TOLERANCE}); wrote {dst}")


if __name__ == "__main__":
    main()
