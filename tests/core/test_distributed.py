"""Data-parallel training with tf.distribute.MirroredStrategy, on a CPU split in two."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[2])
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
os.environ["WETLAND_UNET_DEVICES"] = "/cpu:0,/cpu:1"
from synthetic import make_scene, write_mask
from wetland_unet_plugin.core.feedback import Feedback
from wetland_unet_plugin.core.modelfile import read_metadata
from wetland_unet_plugin.core.training import train_model

class Log(Feedback):
    lines = []
    def info(self, text):
        self.lines.append(text)

folder = sys.argv[1]
image = os.path.join(folder, "img.tif")
mask = write_mask(os.path.join(folder, "mask.tif"), make_scene(image, 128, 128, seed=4), image)
log = Log()
result = train_model([image], [mask], "water,wetland,forest", os.path.join(folder, "m.keras"),
                     patch_size=32, batch_size=8, train_size=64, val_size=16, epochs=3,
                     filters=8, depth=2, learning_rate=0.01, seed=2, feedback=log)
print(json.dumps({"log": log.lines, "val": result["validation"]["overall_accuracy"],
                  "replicas": len(tf.config.list_logical_devices("CPU")),
                  "classes": read_metadata(result["output_model"])["class_names"]}))
"""


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Training replicates over two devices and still writes a model that learned."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), os.path.dirname(os.path.abspath(__file__))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert any("(MirroredStrategy) on 2 devices" in line for line in out["log"])
    assert out["classes"] == ["water", "wetland", "forest"]
    assert out["val"] > 0.5
