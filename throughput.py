"""Single-thread throughput on 500 sentiment tweets (batches of 32 sorted by length).

Reports wall-clock and process-CPU texts/s: the machine is shared, so CPU time (single
thread) is the contention-robust number. Writes throughput_cpu.json.
"""
from __future__ import annotations

import os
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"
import json, sys, time
from pathlib import Path

from csig.data import load_corpus
from csig.encoders import SPECS, Encoder

ROOT = Path(__file__).resolve().parent
out_path = ROOT / "throughput_cpu.json"
res = json.loads(out_path.read_text()) if out_path.exists() else {}
tweets = load_corpus("sentiment_tweeteval").texts[:500]
for name in sys.argv[1:] or list(SPECS):
    enc = Encoder(SPECS[name], threads=1)
    enc.encode(tweets[:32])
    w0, c0 = time.perf_counter(), time.process_time()
    enc.encode(tweets)
    w, c = time.perf_counter() - w0, time.process_time() - c0
    res[name] = {"n_texts": 500, "wall_s": w, "cpu_s": c, "texts_per_wall_s": 500 / w,
                 "texts_per_cpu_s": 500 / c, "file_bytes": SPECS[name].onnx.stat().st_size,
                 "loadavg_1m": os.getloadavg()[0]}
    out_path.write_text(json.dumps(res, indent=1))
    print(name, res[name], flush=True)
