"""Train EDSR / MDSR (Lim et al., 2017) with TensorFlow / Keras 3.

  python train.py --flagfile=configs/quickstart.cfg            # minutes on a CPU, no download
  python train.py --flagfile=configs/edsr_baseline_x2.cfg      # the paper's schedule on DIV2K
  python train.py --flagfile=configs/edsr_baseline_x2.cfg --resume   # continue a stopped run

Flags given after --flagfile override it. The job directory (--out_dir) gets
checkpoints/, logs/ (TensorBoard), best.weights.h5, final.weights.h5 and
eval.json / eval.md (PSNR/SSIM vs bicubic).
"""

from absl import app, flags

from edsr_tf.training import flags as training_flags
from edsr_tf.training.app import main

training_flags.define_flags()
flags.adopt_module_key_flags(training_flags)

if __name__ == "__main__":
    app.run(main)
