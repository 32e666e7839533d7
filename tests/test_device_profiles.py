"""Device profiles: the built-in boards, and user TOML files that add or override one."""

from __future__ import annotations

import pytest

from tsprune_edge.devices.profiles import BUILT_IN, available_profiles, load_profile
from tsprune_edge.errors import UserError


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TSPRUNE_EDGE_DEVICES_DIR", str(tmp_path))
    return tmp_path


def test_built_in_boards(profile_dir):
    rpi4, nano, desktop = load_profile("rpi4"), load_profile("jetson-nano"), load_profile("desktop")
    assert rpi4.arch == "aarch64" and rpi4.cores == 4 and "Cortex-A72" in rpi4.description
    assert nano.runtimes == ("onnxruntime",) and nano.onnx_providers[0] == "TensorrtExecutionProvider"
    assert "Python 3.6" in nano.description
    assert desktop.local and not rpi4.local
    assert available_profiles() == list(BUILT_IN)


def test_a_user_file_overrides_only_the_keys_it_names(profile_dir):
    (profile_dir / "rpi4.toml").write_text('python = "/home/pi/venv/bin/python"\nthreads = [1, 2, 4]\n')
    profile = load_profile("rpi4")
    assert profile.python == "/home/pi/venv/bin/python" and profile.threads == (1, 2, 4)
    assert profile.arch == "aarch64" and profile.round_to == BUILT_IN["rpi4"].round_to


def test_a_user_file_adds_a_board(profile_dir):
    (profile_dir / "orangepi.toml").write_text(
        'description = "Orange Pi 5"\narch = "aarch64"\ncores = 8\nmemory_mb = 8192\n'
        'runtimes = ["tflite_runtime"]\n')
    assert "orangepi" in available_profiles()
    profile = load_profile("orangepi")
    assert profile.cores == 8 and profile.runtimes == ("tflite_runtime",) and profile.python == "python3"


@pytest.mark.parametrize("text, fragment", [
    ('colour = "red"\n', "unknown key 'colour'"),
    ('runtimes = ["tensorflow"]\n', "unknown runtime 'tensorflow'"),
    ("threads = []\n", "threads must be a list of positive integers"),
    ('cores = "four"\n', "cores must be a positive integer"),
    ("threads = 4\n", "threads must be a list"),
    ("cores = [\n", "not a readable TOML profile"),
])
def test_bad_user_files_are_refused_in_one_line(profile_dir, text, fragment):
    (profile_dir / "rpi4.toml").write_text(text)
    with pytest.raises(UserError, match=fragment) as info:
        load_profile("rpi4")
    assert "\n" not in str(info.value)


def test_a_new_board_must_say_what_it_is(profile_dir):
    (profile_dir / "mystery.toml").write_text("cores = 2\n")
    with pytest.raises(UserError, match="a new profile needs description, arch, memory_mb"):
        load_profile("mystery")


def test_unknown_device_lists_the_known_ones(profile_dir):
    with pytest.raises(UserError, match="unknown device 'rpi5'; choose one of rpi4, jetson-nano, desktop"):
        load_profile("rpi5")


def test_runtimes_can_live_in_their_own_interpreters(profile_dir):
    (profile_dir / "rpi4.toml").write_text('host = "pi@raspberrypi.local"\n'
                                           '[interpreters]\ntflite_runtime = "/home/pi/tfl/bin/python"\n')
    profile = load_profile("rpi4")
    assert profile.host == "pi@raspberrypi.local"
    assert profile.interpreter("tflite_runtime") == "/home/pi/tfl/bin/python"
    assert profile.interpreter("onnxruntime") == "python3"
    (profile_dir / "rpi4.toml").write_text('[interpreters]\ntensorflow = "/usr/bin/python3"\n')
    with pytest.raises(UserError, match="interpreters maps runtimes"):
        load_profile("rpi4")
