#!/usr/bin/env python3
"""Python onnxruntime reference for Kordon's detector (crates/infer): the same work —
bilinear letterbox pre-processing, one session call, softmax-expectation decode and per-class
NMS — written with numpy, so Kordon can be checked against it (tests/nanodet.rs) and benchmarked
beside it (compare.sh).

  reference.py --model M --footage F --at 3 --print
      one line per detection of the frame at 3 s: class_id score x1 y1 x2 y2 (normalised)
  reference.py --model M --footage F --frames 16 --threads 2 --batch 1 --seconds 10
      frames/s over the first 16 frames (at 2 fps) of the clip, repeated for ~10 s
"""

import argparse
import itertools
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

MEAN = np.array([103.53, 116.28, 123.675], dtype=np.float32)
STD = np.array([57.375, 57.12, 58.395], dtype=np.float32)
BINS = 11


def probe(footage):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=width,height", "-of", "csv=p=0", footage],
        check=True, capture_output=True, text=True).stdout.strip().split(",")
    return int(out[0]), int(out[1])


def frames_at(footage, times):
    w, h = probe(footage)
    result = []
    for t in times:
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", str(t), "-i", footage, "-frames:v", "1",
             "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], check=True, capture_output=True).stdout
        result.append(np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3))
    return result


def frames_first(footage, count):
    w, h = probe(footage)
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", footage, "-vf", "fps=2", "-frames:v", str(count),
         "-f", "rawvideo", "-pix_fmt", "bgr24", "-"], check=True, capture_output=True).stdout
    return list(np.frombuffer(raw, dtype=np.uint8).reshape(-1, h, w, 3))


def taps(src, dst):
    ratio = np.float32(src) / np.float32(dst)
    s = np.maximum((np.arange(dst, dtype=np.float32) + np.float32(0.5)) * ratio - np.float32(0.5),
                   np.float32(0))
    i0 = np.minimum(np.floor(s).astype(np.int64), src - 1)
    i1 = np.minimum(i0 + 1, src - 1)
    return i0, i1, (s - i0.astype(np.float32)).astype(np.float32)


def letterbox(img, size, out):
    """Writes img letterboxed into out [3, size, size]; returns (scale, pad_x, pad_y, w, h)."""
    h, w = img.shape[:2]
    scale = min(np.float32(size) / np.float32(w), np.float32(size) / np.float32(h))
    nw = min(max(int(np.round(np.float32(w) * scale)), 1), size)
    nh = min(max(int(np.round(np.float32(h) * scale)), 1), size)
    px, py = (size - nw) // 2, (size - nh) // 2
    x0, x1, wx = taps(w, nw)
    y0, y1, wy = taps(h, nh)
    r0 = img[y0].astype(np.float32)
    r1 = img[y1].astype(np.float32)
    wx = wx[None, :, None]
    top = r0[:, x0] + (r0[:, x1] - r0[:, x0]) * wx
    bottom = r1[:, x0] + (r1[:, x1] - r1[:, x0]) * wx
    pix = top + (bottom - top) * wy[:, None, None]
    out[:] = (-MEAN / STD)[:, None, None]
    out[:, py:py + nh, px:px + nw] = ((pix - MEAN) * (np.float32(1) / STD)).transpose(2, 0, 1)
    return scale, px, py, w, h


def iou(box, boxes):
    w = np.maximum(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0)
    h = np.maximum(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0)
    inter = w * h
    area = lambda b: np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


def postprocess(levels, lb, threshold, nms_iou):
    """levels: [(stride, cols, scores [cells,C], regs [cells,44])]."""
    cls_all, score_all, box_all = [], [], []
    for stride, cols, scores, regs in levels:
        cells, classes = np.nonzero(scores >= threshold)
        if len(cells) == 0:
            continue
        r = regs[cells].reshape(-1, 4, BINS)
        e = np.exp(r - r.max(axis=2, keepdims=True))
        dist = (e * np.arange(BINS, dtype=np.float32)).sum(axis=2) / e.sum(axis=2) * stride
        cx = (cells % cols + 0.5) * stride
        cy = (cells // cols + 0.5) * stride
        box_all.append(np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1))
        cls_all.append(classes)
        score_all.append(scores[cells, classes])
    if not box_all:
        return []
    boxes, cls, sc = np.concatenate(box_all), np.concatenate(cls_all), np.concatenate(score_all)
    order = np.lexsort((boxes[:, 1], boxes[:, 0], cls, -sc))
    kept = []
    for i in order:
        if all(cls[k] != cls[i] or iou(boxes[k], boxes[i:i + 1])[0] <= nms_iou for k in kept):
            kept.append(i)
    scale, px, py, w, h = lb
    result = []
    for k in kept:
        b = boxes[k]
        nx = lambda x: float(np.clip((x - px) / (scale * w), 0, 1))
        ny = lambda y: float(np.clip((y - py) / (scale * h), 0, 1))
        result.append((int(cls[k]), float(sc[k]), nx(b[0]), ny(b[1]), nx(b[2]), ny(b[3])))
    return result


class Detector:
    def __init__(self, model, threads, threshold=0.3, nms_iou=0.6):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input = inp.name
        self.size = inp.shape[3]
        self.threshold, self.nms_iou = threshold, nms_iou
        self.levels = []  # (stride, cols, scores index, boxes index)
        for i, o in enumerate(self.session.get_outputs()):
            cells, c = o.shape[1], o.shape[2]
            cols = int(round(cells ** 0.5))
            stride = self.size // cols
            lv = next((l for l in self.levels if l[0] == stride), None)
            if lv is None:
                lv = [stride, cols, None, None]
                self.levels.append(lv)
            lv[3 if c == 4 * BINS else 2] = i
        self.levels.sort()

    def detect(self, images):
        batch = np.empty((len(images), 3, self.size, self.size), dtype=np.float32)
        lbs = [letterbox(img, self.size, batch[i]) for i, img in enumerate(images)]
        outs = self.session.run(None, {self.input: batch})
        return [postprocess([(s, c, outs[si][i], outs[bi][i]) for s, c, si, bi in self.levels],
                            lb, self.threshold, self.nms_iou) for i, lb in enumerate(lbs)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--footage", required=True)
    ap.add_argument("--at", type=float, action="append")
    ap.add_argument("--print", action="store_true")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    det = Detector(a.model, a.threads)
    if a.print:
        for img in frames_at(a.footage, a.at or [3.0]):
            for d in det.detect([img])[0]:
                print(d[0], " ".join(f"{v:.6f}" for v in d[1:]))
        return
    frames = frames_first(a.footage, a.frames)
    det.detect(frames[:a.batch])  # warm-up
    chunks = itertools.cycle([frames[i:i + a.batch] for i in range(0, len(frames), a.batch)])
    done, start = 0, time.perf_counter()
    while True:  # stop at the first batch boundary past the time, as bench_detector does
        chunk = next(chunks)
        det.detect(chunk)
        done += len(chunk)
        if time.perf_counter() - start >= a.seconds:
            break
    elapsed = time.perf_counter() - start
    print(f"python onnxruntime {ort.__version__} batch {a.batch} threads {a.threads}: "
          f"{done / elapsed:.1f} frames/s ({done} frames in {elapsed:.1f} s)")


if __name__ == "__main__":
    sys.exit(main())
