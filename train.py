"""Train EDSR / MDSR (Lim et al., 2017) with TensorFlow / Keras 3.

  python train.py --flagfile=configs/quickstart.cfg            # minutes on a CPU, no download
  python train.py --flagfile=configs/edsr_baseline_x2.cfg      # the paper's schedule on DIV2K
  python train.py --flagfile=configs/edsr_baseline_x2.cfg --resume   # continue a stopped run

Flags given after --flagfile override it. The job directory (--out_dir) gets
checkpoints/, logs/ (TensorBoard), best.weights.h5, final.weights.h5 and
eval.json / eval.md (PSNR/SSIM vs bicubic).

Exit status: 0 trained, 1 the training failed, 2 bad flags or configuration
(errors are one line, ``error: <message>``, on stderr).
"""

from edsr_tf.training.cli import define_flags, run

define_flags()

if __name__ == "__main__":
    run()
