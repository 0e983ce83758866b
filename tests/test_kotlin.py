"""The Android wrapper compiled by a real Kotlin compiler and run on the JVM against the real JNI glue.

``EdgeVideo.kt`` (no Android classes) and its JVM test ``apps/android/edgevideo/src/test/.../EdgeVideoJvmTest.kt`` are
compiled by Debian's kotlinc (``scripts/system_setup.sh`` installs it; the test only locates it, and a missing one
fails the test). The JNI prototypes of the wrapper's ``external`` functions are read from the *compiled* class (``javap -s``
descriptors -> C declarations, what ``javac -h`` writes for Java), and the glue
(``apps/android/edgevideo/src/main/cpp``) is compiled with them included first: a glue function whose C signature
disagrees with the Kotlin declaration is a conflicting declaration, a compile error. The glue is linked to the x86_64
native core (``sdk.native.build``) and the Kotlin test streams the tiny int8 clip bundle through ``EdgeVideo``: its
predictions must equal the Python runtime's, and bad input (a missing bundle, a negative window, a short frame
buffer) must raise ``EdgeVideoException`` with the core's status. It also streams the trained tiny adaptive FASTER
bundle at the bundle's gate threshold, +inf and -inf: the segments the expensive model saw and the last prediction
must be the Python runtime's. Not covered here: Gradle, the Android SDK (CameraX, the activity), the NDK build, a
device.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
from host_setup import located
from test_native_bundles import video

import sdk
from sdk.camera import CameraFrame
from sdk.classifier import StreamClassifier
from sdk.native import build

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "apps" / "android" / "edgevideo" / "src"  # the Android library module
# the whole module, sources and tests: a file added to the library is compiled too
MODULE_SOURCES = sorted((LIBRARY / "main" / "java").rglob("*.kt")) + sorted((LIBRARY / "test" / "java").rglob("*.kt"))
GLUE = sorted((LIBRARY / "main" / "cpp").glob("*.cpp"))
HEADER_DIR = ROOT / "sdk" / "native" / "include"
CLASS = "org.edgevideo.EdgeVideo"
JNI_TYPES = {"J": "jlong", "I": "jint", "D": "jdouble", "F": "jfloat", "Z": "jboolean", "V": "void",
             "Ljava/lang/String;": "jstring", "Ljava/nio/ByteBuffer;": "jobject", "[B": "jbyteArray",
             "[I": "jintArray", "[F": "jfloatArray", "[J": "jlongArray"}


def _tool(script: str, key: str, *args: str) -> Path:
    """Where ``scripts/SCRIPT`` (installs off: tests/host_setup.py) says the tool ``key`` is."""
    return Path(re.search(rf"^{key}: (.+)$", located(script, *args).stdout, flags=re.M).group(1))


def jni_prototypes(javap_output: str) -> str:
    """C declarations of the native methods ``javap -s -p`` lists for ``CLASS``."""
    lines = ["#include <jni.h>", 'extern "C" {']
    for name, params, ret in re.findall(r"static\s+(?:final\s+)?native\s+[\w.\[\]]+\s+(\w+)\(.*?\);\s*"
                                        r"descriptor: \((.*?)\)(\S+)", javap_output):
        types = re.findall(r"\[?(?:L[\w/]+;|[JIDFZBV])", params)
        c_params = ", ".join(["JNIEnv*", "jclass", *[JNI_TYPES[t] for t in types]])
        symbol = "Java_" + CLASS.replace(".", "_") + "_" + name
        lines.append(f"JNIEXPORT {JNI_TYPES[ret]} JNICALL {symbol}({c_params});")
    assert len(lines) > 2, f"no static native methods in:\n{javap_output}"
    return "\n".join([*lines, "}"]) + "\n"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[Path, Path]:
    """``(jar, jdk)``: the library module's Kotlin (the wrapper) and its JVM test compiled by kotlinc, with the Kotlin
    runtime included."""
    kotlinc = _tool("kotlin_setup.sh", "kotlinc")
    jdk = _tool("arm64_toolchain.sh", "jdk", "--jni")
    jar = tmp_path_factory.mktemp("kotlin") / "edgevideo-test.jar"
    proc = subprocess.run([str(kotlinc), *map(str, MODULE_SOURCES), "-include-runtime", "-d", str(jar)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "JAVA_HOME": str(jdk)})
    assert proc.returncode == 0 and jar.is_file(), proc.stderr[-3000:]
    return jar, jdk


def build_glue(jar: Path, jdk: Path, out: Path) -> subprocess.CompletedProcess:
    """The glue as a shared library over the x86_64 core, its functions checked against the compiled wrapper's."""
    javap = subprocess.run([str(jdk / "bin" / "javap"), "-s", "-p", "-cp", str(jar), CLASS], capture_output=True,
                           text=True, check=True).stdout
    header = out.parent / "edgevideo_kotlin_jni.h"
    header.write_text(jni_prototypes(javap))
    core = build()
    return subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                           "-I", str(jdk / "include"), "-I", str(jdk / "include" / "linux"), "-I", str(HEADER_DIR),
                           "-include", str(header), *map(str, GLUE), "-o", str(out), f"-L{core}", "-ledgevideo",
                           f"-Wl,-rpath,{core}"], capture_output=True, text=True, check=False)


def _python_predictions(bundle: Path, frames, out: Path) -> list:
    """sdk.StreamClassifier(window=8) on ``frames`` (int8 programs), written one line per prediction for the JVM
    test: ``classId label window frameIndex score``."""
    with sdk.load(bundle, backend="executorch", precision="int8") as model:
        python = StreamClassifier(model, window=8)
        want = [p for p in (python.push(f) for f in frames) if p is not None]
    out.write_text("".join(f"{p.class_ids[0]} {p.labels[0]} {p.window} {p.frame_index} "
                           f"{float(p.probabilities[p.class_ids[0]])!r}\n" for p in want))
    return want


def _python_gate_counts(bundle: Path, frames: np.ndarray, out: Path) -> list[tuple]:
    """sdk.StreamClassifier on an adaptive FASTER bundle's frames pushed as RGB camera images, at the bundle's
    threshold, +inf and -inf: one line per threshold for the JVM test, ``threshold segments expensive label score``
    (the last prediction)."""
    rows = []
    with sdk.load(bundle, backend="executorch", precision="fp32") as model:
        for name, threshold in (("bundle", None), ("Infinity", math.inf), ("-Infinity", -math.inf)):
            python = StreamClassifier(model, gate_threshold=threshold)
            last = [p for p in (python.push(CameraFrame.from_rgb(f, "rgb")) for f in frames) if p is not None][-1]
            rows.append((name, python.stats.segments, python.stats.expensive_segments, last.labels[0],
                         float(last.probabilities[last.class_ids[0]])))
    out.write_text("".join(" ".join(map(str, r[:4])) + f" {r[4]!r}\n" for r in rows))
    return rows


def test_kotlin_wrapper_streams_a_bundle_like_python(compiled, native_bundles, faster_trained, tmp_path):
    jar, jdk = compiled
    lib = tmp_path / "libedgevideo_jni.so"
    proc = build_glue(jar, jdk, lib)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = video(40, seed=5)
    raw = tmp_path / "frames.rgb"
    raw.write_bytes(frames.tobytes())
    bundle = native_bundles["clip"]
    # camera frames: NV21 as YUV_420_888 holds it, 96x72 stored rotated (the sensor's orientation), rotation 90
    cams = [CameraFrame.from_rgb(cv2.rotate(cv2.resize(f, (96, 72)), cv2.ROTATE_90_COUNTERCLOCKWISE), "nv21",
                                 rotation=90) for f in frames]
    (tmp_path / "frames.nv21").write_bytes(b"".join(c.planes[0].tobytes() + c.planes[1].tobytes() for c in cams))
    expected, cam_expected = tmp_path / "expected.txt", tmp_path / "camera.txt"
    want = _python_predictions(bundle, frames, expected)
    want_cam = _python_predictions(bundle, cams, cam_expected)
    # an adaptive FASTER bundle (learned gate): one validation long video's frames as RGB camera images
    gated, video_path = faster_trained["gated"], sorted((faster_trained["bench"] / "videos" / "val").rglob("*.mp4"))[0]
    capture = cv2.VideoCapture(str(video_path))
    gated_frames = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for ok, f in iter(capture.read, (False, None)) if ok])
    capture.release()
    gh, gw = gated_frames.shape[1:3]
    (tmp_path / "gated.rgb").write_bytes(gated_frames.tobytes())
    gates = _python_gate_counts(gated, gated_frames, tmp_path / "gates.txt")
    assert 0 < gates[0][2] < gates[0][1] and gates[1][2] == 0 and gates[2][2] == gates[2][1], gates
    proc = subprocess.run([str(jdk / "bin" / "java"), f"-Djava.library.path={tmp_path}", "-cp", str(jar),
                           "org.edgevideo.EdgeVideoJvmTestKt", str(bundle), str(raw), "48", "36", str(expected),
                           str(tmp_path / "frames.nv21"), "72", "96", str(cam_expected), str(gated),
                           str(tmp_path / "gated.rgb"), str(gw), str(gh), str(tmp_path / "gates.txt")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(want) == 5 and len([x for x in proc.stdout.splitlines() if x.startswith("prediction")]) == 5
    assert len(want_cam) == 5 and len([x for x in proc.stdout.splitlines() if x.startswith("camera prediction")]) == 5
    assert proc.stdout.splitlines()[-1] == "26 passed, 0 failed"
