"""The demo job's program, run inside the sandbox by `tre demo` as ``python3 -c <source>``.

It reads every DICOM file under /data, writes a per-image summary CSV and a PNG montage of
the images to /output, and tries (and is expected to fail) to reach the network.
"""

DEMO_JOB_SOURCE = r"""
import csv, os, socket, sys
from pathlib import Path
import numpy as np
import pydicom
from PIL import Image

rows, thumbs = [], []
for f in sorted(Path("/data").rglob("*")):
    if not f.is_file():
        continue
    try:
        ds = pydicom.dcmread(f)
        px = ds.pixel_array
    except Exception as exc:
        print(f"skip {f.name}: {type(exc).__name__}")
        continue
    if px.ndim == 3:
        px = px[px.shape[0] // 2]
    if px.ndim != 2:
        continue
    slope = float(getattr(ds, "RescaleSlope", 1))
    hu = px.astype(np.float64) * slope + float(getattr(ds, "RescaleIntercept", 0))
    rows.append({"file": f.name, "modality": ds.get("Modality", ""), "rows": px.shape[0],
                 "columns": px.shape[1], "mean": round(float(hu.mean()), 2),
                 "std": round(float(hu.std()), 2)})
    lo, hi = np.percentile(hu, [1, 99])
    img = np.clip((hu - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    thumbs.append(Image.fromarray(img).resize((128, 128)))
    print(f"read {f.name}: {ds.get('Modality', '?')} {px.shape[0]}x{px.shape[1]}")

with open("/output/summary.csv", "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=["file", "modality", "rows", "columns", "mean", "std"])
    w.writeheader()
    w.writerows(rows)
cols = min(len(thumbs), 6) or 1
sheet = Image.new("L", (128 * cols, 128 * max(1, -(-len(thumbs) // cols))))
for i, t in enumerate(thumbs):
    sheet.paste(t, (128 * (i % cols), 128 * (i // cols)))
sheet.save("/output/montage.png")
try:
    socket.create_connection(("1.1.1.1", 443), timeout=2)
    print("network: REACHABLE (this must not happen)")
    sys.exit(3)
except OSError as exc:
    print(f"network: unreachable as expected ({exc.strerror or exc})")
print(f"wrote summary.csv ({len(rows)} images) and montage.png")
"""
