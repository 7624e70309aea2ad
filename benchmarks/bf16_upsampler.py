"""bf16 inference with the upsampler in float32 (as the training builders declare it) vs in bfloat16.

    python benchmarks/bf16_upsampler.py edsr_baseline_x4 edsr_baseline_x2

For each shipped model: one 256x256 LR crop of 'astronaut', untiled, median (best) of 5 interleaved
runs after a warm-up, for fp32, bf16 with a float32 upsampler (before 2026-12-07) and bf16 with a
bfloat16 upsampler (what `--precision bf16`/`auto` runs now). Set5 quality: tests/test_precision_default.py.
"""
import sys, time, statistics, numpy as np, keras
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edsr_tf.models import load_model, build_model, model_for_scale
from edsr_tf.inference import upscale_array
from edsr_tf import inference_precision as ip
from edsr_tf.sample_data import sample_image
img = sample_image("astronaut")[:256, :256].astype(np.float32)
for name in sys.argv[1:]:
    model, config = load_model(name); s = config.scales[0]
    new = ip.bf16_model(model, config, s)
    prev = keras.config.dtype_policy(); keras.config.set_dtype_policy("mixed_bfloat16")
    old = build_model(config); keras.config.set_dtype_policy(prev); old.set_weights(model.get_weights())
    nets = {"fp32": model, "bf16 (fp32 upsampler)": old, "bf16 (bf16 upsampler)": new}
    times = {k: [] for k in nets}
    for k, n in nets.items(): upscale_array(n, s, img, tile=None)
    for r in range(5):
        for k, n in nets.items():
            t0 = time.perf_counter(); upscale_array(n, s, img, tile=None); times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["fp32"])
    for k, v in times.items():
        m = statistics.median(v); print(f"{name} {k}: {1000*m:.0f} ms (best {1000*min(v):.0f}), {base/m:.2f}x fp32", flush=True)
