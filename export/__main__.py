"""``python -m export --weights W --formats savedmodel,tflite,onnx --out_dir DIR`` (same as ``edsr-export``)."""

import sys

from edsr_tf.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
