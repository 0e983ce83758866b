"""The phone shells against the native core's C API (issue 18, items 3-4), as far as this Linux host can take them.

Android: the JNI glue (``apps/android/edgevideo/src/main/cpp/*.cpp``) is compiled against a JDK's ``jni.h`` and
``edgevideo.h`` for x86_64 and aarch64, **together with the JNI header that ``javac -h`` writes for the native
methods ``EdgeVideo.kt`` declares** (translated to Java here: Kotlin cannot be compiled on this host), so a glue
function whose C signature disagrees with its Kotlin declaration is a compile error. Then the glue runs in a JVM: a
small Java program calls those native methods on a clip bundle, frame by frame, and its predictions equal the
Python runtime's. Not covered: Kotlin, Gradle, CameraX, the NDK (bionic) build, a device.

iOS: the bridging header compiles as C (C99 and C11, ``-pedantic -Werror``), and every C API function, type and
constant that the Swift files use exists in ``edgevideo.h`` with the arity and argument types the Swift code passes
(a small parser of both; Swift's C import rules for the types used). Not covered: the Swift compiler, Xcode,
AVFoundation, and Core ML prediction (not verified on Linux).

The JDK and the aarch64 cross compiler are installed by ``scripts/system_setup.sh`` (``scripts/test.sh`` runs it);
the tests only locate them (``scripts/arm64_toolchain.sh --jni`` with installs off, :mod:`tests.host_setup`) and fail
naming the set-up command when they are missing.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import sdk
from sdk.classifier import StreamClassifier
from sdk.native import build
from test_native_bundles import video
from tests.host_setup import located, missing

ROOT = Path(__file__).resolve().parents[1]
HEADER = ROOT / "sdk" / "native" / "include" / "edgevideo.h"
LIBRARY = ROOT / "apps" / "android" / "edgevideo" / "src" / "main"  # the Android library module
JNI_DIR = LIBRARY / "cpp"
KOTLIN = LIBRARY / "java" / "org" / "edgevideo" / "EdgeVideo.kt"
IOS_DIR = ROOT / "apps" / "ios" / "EdgeVideoDemo"
BRIDGING = IOS_DIR / "EdgeVideoDemo-Bridging-Header.h"


# ------------------------------------------------------------------------------------------------------ the C header
def _strip_c_comments(text: str) -> str:
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def _c_type(decl: str) -> str:
    """``const uint8_t* rgb`` -> ``const uint8_t*``; ``char out_hex[65]`` -> ``char*`` (the name dropped)."""
    array = re.search(r"\[\s*\d*\s*\]\s*$", decl)
    if array:
        decl = decl[:array.start()]
    words = " ".join(decl.replace("*", " * ").split()).split(" ")
    if len(words) > 1 and re.fullmatch(r"\w+", words[-1]) and words[-1] != "const":
        words = words[:-1]  # the parameter name
    if array:
        words.append("*")
    return " ".join(words).replace(" *", "*")


def c_api(header: Path = HEADER) -> tuple[dict[str, tuple[str, list[str]]], dict[str, dict[str, str]], set[str]]:
    """``edgevideo.h``: functions ``{name: (return type, [parameter types])}``, structs ``{name: {field: type}}``,
    and the enum constants."""
    text = _strip_c_comments(header.read_text())
    functions = {}
    for ret, name, params in re.findall(r"EV_API\s+([\w\s\*]+?)\s*\b(ev_\w+)\s*\(([^)]*)\)\s*;", text):
        types = [] if params.strip() in ("", "void") else [_c_type(p) for p in params.split(",")]
        functions[name] = (_c_type(ret + " x"), types)
    structs = {name: {f: _c_type(t + " x") for t, f in re.findall(r"([\w\s\*]+?)\s+(\w+)\s*;", body)}
               for name, body in re.findall(r"typedef\s+struct\s+(\w+)\s*\{(.*?)\}\s*\w+\s*;", text, flags=re.S)}
    opaque = set(re.findall(r"typedef\s+struct\s+(\w+)\s+\w+\s*;", text))
    for name in opaque:
        structs.setdefault(name, {})
    constants = set(re.findall(r"\b(EV_[A-Z_]+)\s*=", text))
    return functions, structs, constants


# Swift's import of the C types the API uses (``const char*`` also takes a Swift String).
SWIFT_OF_C = {"int32_t": "Int32", "int64_t": "Int64", "size_t": "Int", "double": "Double", "float": "Float",
              "ev_status": "ev_status", "const char*": "UnsafePointer<CChar>?", "const uint8_t*": "UnsafePointer<UInt8>?",
              "ev_classifier*": "OpaquePointer?", "const ev_classifier*": "OpaquePointer?",
              "const ev_image*": "UnsafePointer<ev_image>?"}


def _swift_type_of_c(c_type: str, structs: dict) -> str:
    if c_type in SWIFT_OF_C:
        return SWIFT_OF_C[c_type]
    if c_type.rstrip("*").removeprefix("const ").strip() in structs and c_type.endswith("**"):
        return "UnsafeMutablePointer<OpaquePointer?>?"  # ev_classifier**: &handle
    raise AssertionError(f"no Swift import rule here for the C type {c_type!r}: extend SWIFT_OF_C")


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments (parentheses, brackets, braces and string literals respected)."""
    args, depth, cur, in_str = [], 0, "", False
    for ch in text:
        if ch == '"':
            in_str = not in_str
        elif not in_str and ch in "([{":
            depth += 1
        elif not in_str and ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not in_str:
            args.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [a for a in [*args, cur.strip()] if a]


def _calls(text: str, prefix: str = "ev_") -> list[tuple[str, list[str], int]]:
    """Every ``prefix*(...)`` call: (name, argument expressions, line)."""
    out = []
    for m in re.finditer(rf"\b({prefix}\w+)\s*\(", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append((m.group(1), _split_args(text[m.end():i - 1]), text.count("\n", 0, m.start()) + 1))
    return out


def _swift_declared_types(text: str) -> dict[str, str]:
    """Names declared with a type in the Swift file: ``let/var x: T``, parameters ``label x: T`` / ``x: T`` of
    ``func``/``init``, and ``var x = ev_struct()``."""
    types = {name: t for name, t in re.findall(r"\b(?:let|var)\s+(\w+)\s*:\s*([\w<>.]+\??)", text)}
    for params in re.findall(r"\b(?:func\s+\w+|init)\s*\(([^)]*)\)", text):
        for p in _split_args(params):
            m = re.match(r"(?:\w+\s+)?(\w+)\s*:\s*([\w<>.]+\??)", p)
            if m:
                types[m.group(1)] = m.group(2)
    types.update(re.findall(r"\bvar\s+(\w+)\s*=\s*(ev_\w+)\(\)", text))
    return types


def swift_api_mismatches(swift_files: list[Path], header: Path = HEADER) -> tuple[list[str], int]:
    """What the Swift code uses of the C API that ``header`` does not provide as used; and the number of calls."""
    functions, structs, constants = c_api(header)
    problems, n_calls = [], 0
    for path in swift_files:
        text = re.sub(r"//[^\n]*", "", path.read_text())
        types = _swift_declared_types(text)
        for const in sorted(set(re.findall(r"\b(EV_[A-Z_]+)\b", text)) - constants):
            problems.append(f"{path.name}: constant {const} is not in {header.name}")
        for type_name in sorted(set(re.findall(r":\s*(ev_\w+)\b(?!\s*\()", text))):
            if type_name not in structs and type_name != "ev_status":
                problems.append(f"{path.name}: type {type_name} is not in {header.name}")
        for name, args, line in _calls(text):
            where = f"{path.name}:{line} {name}"
            if name in structs:  # `ev_options()`: Swift's zero initialiser of an imported struct
                if args:
                    problems.append(f"{where}: a C struct is zero-initialised without arguments in Swift")
                continue
            if name not in functions:
                problems.append(f"{where}: no such function in {header.name}")
                continue
            n_calls += 1
            params = functions[name][1]
            if len(args) != len(params):
                problems.append(f"{where}: called with {len(args)} arguments, declared with {len(params)}")
                continue
            for k, (arg, c_type) in enumerate(zip(args, params)):
                problem = _argument_problem(arg, c_type, types, structs)
                if problem:
                    problems.append(f"{where} argument {k + 1} `{arg}` -> `{c_type}`: {problem}")
    return problems, n_calls


def _argument_problem(arg: str, c_type: str, types: dict[str, str], structs: dict) -> str | None:
    """Why the Swift expression ``arg`` cannot be passed as ``c_type`` (None when it can)."""
    if arg.startswith("&"):  # inout: a pointer to the variable
        var = arg[1:]
        if not c_type.endswith("*"):
            return "&variable passed where C takes no pointer"
        pointee = c_type[:-1].removeprefix("const ").strip()
        # a pointer's pointee is an OpaquePointer, a struct keeps its name, a number its Swift name (int64_t: Int64)
        want = "OpaquePointer?" if pointee.endswith("*") else SWIFT_OF_C.get(pointee, pointee)
        got = types.get(var)
        return None if got == want else f"{var} is {got}, C wants a pointer to {pointee} ({want})"
    member = re.fullmatch(r"(\w+)\.(\w+)", arg)
    if member and member.group(2) == "path":
        got = "String"  # URL.path
    elif member and types.get(member.group(1)) in structs:
        field_type = structs[types[member.group(1)]].get(member.group(2))
        if field_type is None:
            return f"{types[member.group(1)]} has no field {member.group(2)}"
        got = _swift_type_of_c(field_type, structs).rstrip("?")
    elif re.fullmatch(r"\w+", arg) and arg in types:
        got = types[arg]
    else:
        return f"expression not understood by this checker (declare `{arg}` with a type)"
    want = _swift_type_of_c(c_type, structs)
    if got == want or got + "?" == want or (got == "String" and c_type == "const char*"):
        return None
    return f"Swift {got}, C {c_type} imports as {want}"


# ----------------------------------------------------------------------------------------------------------- iOS
@pytest.mark.parametrize("std", ["c99", "c11"])
def test_ios_bridging_header_compiles_as_c(std, tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    assert cc, "a C compiler (gcc) is needed"
    proc = subprocess.run([cc, "-x", "c", f"-std={std}", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                           "-I", str(HEADER.parent), str(BRIDGING)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_swift_calls_match_the_c_api():
    swift = sorted(IOS_DIR.glob("*.swift"))
    problems, n_calls = swift_api_mismatches(swift)
    assert problems == []
    assert n_calls >= 9  # ev_options_default, ev_create, ev_destroy, ev_next_frame, ev_push_frame, ev_label, ...


def test_the_swift_checker_sees_a_changed_signature(tmp_path):
    """The checker itself: a header whose ev_push_frame lost its length argument, and one whose window became
    int64_t, are reported at the Swift call sites."""
    text = HEADER.read_text()
    dropped = tmp_path / "dropped.h"
    dropped.write_text(text.replace("const uint8_t* rgb, size_t length,", "const uint8_t* rgb,"))
    problems, _ = swift_api_mismatches(sorted(IOS_DIR.glob("*.swift")), dropped)
    assert any("ev_push_frame: called with 7 arguments, declared with 6" in p for p in problems), problems
    widened = tmp_path / "widened.h"
    widened.write_text(text.replace("int32_t width, int32_t height", "int64_t width, int32_t height"))
    problems, _ = swift_api_mismatches(sorted(IOS_DIR.glob("*.swift")), widened)
    assert any("`width` -> `int64_t`: Swift Int32" in p for p in problems), problems


# ------------------------------------------------------------------------------------------------------- Android
KOTLIN_TO_JAVA = {"String": "String", "Int": "int", "Long": "long", "Double": "double", "Float": "float",
                  "Boolean": "boolean", "ByteArray": "byte[]", "IntArray": "int[]", "FloatArray": "float[]",
                  "LongArray": "long[]", "ByteBuffer": "java.nio.ByteBuffer"}


def java_stand_in(kotlin: Path) -> dict[str, str]:
    """Java sources for ``org.edgevideo``: ``EdgeVideo`` with the ``external fun`` declarations of the Kotlin
    file as static native methods (what ``@JvmStatic external`` in a companion compiles to), and
    ``EdgeVideoException(String)``, which the glue throws."""
    text = kotlin.read_text()
    methods = []
    for name, params, ret in re.findall(r"@JvmStatic\s+external\s+fun\s+(\w+)\(([^)]*)\)\s*(?::\s*([\w?]+))?", text):
        java_params = []
        for p in _split_args(params):
            pname, ptype = (s.strip() for s in p.split(":"))
            java_params.append(f"{KOTLIN_TO_JAVA[ptype.rstrip('?')]} {pname}")
        java_ret = KOTLIN_TO_JAVA[ret.rstrip("?")] if ret else "void"
        methods.append(f"    static native {java_ret} {name}({', '.join(java_params)});")
    assert methods, f"no `@JvmStatic external fun` in {kotlin}"
    assert re.search(r"class EdgeVideoException\(message: String\)", text)
    return {
        "EdgeVideo.java": "package org.edgevideo;\n\n// generated from EdgeVideo.kt by tests/test_apps_compile.py\n"
                          "public final class EdgeVideo {\n    static { System.loadLibrary(\"edgevideo_jni\"); }\n"
                          + "\n".join(methods) + "\n}\n",
        "EdgeVideoException.java": "package org.edgevideo;\n\npublic class EdgeVideoException extends "
                                   "RuntimeException {\n    public EdgeVideoException(String m) { super(m); }\n}\n",
    }


# The stream loop of MainActivity/EdgeVideo.kt, in Java: ask, push the kept frame (null for a dropped one), print.
MAIN_JAVA = r"""package org.edgevideo;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

public final class Main {
    public static void main(String[] a) throws Exception {
        String bundle = a[0];
        byte[] all = Files.readAllBytes(Path.of(a[1]));
        int w = Integer.parseInt(a[2]), h = Integer.parseInt(a[3]), n = all.length / (w * h * 3);
        try {
            EdgeVideo.nativeCreate(bundle + "/missing.vbundle", 0, 0, 0, false);
        } catch (EdgeVideoException e) {
            System.out.println("error " + e.getMessage().split(":")[0]);
        }
        long c = EdgeVideo.nativeCreate(bundle, 8, 0.0, 0.0, true);
        for (int i = 0; i < n; i++) {
            int[] r = EdgeVideo.nativeNextFrame(c);
            byte[] f = r[0] > 0 ? Arrays.copyOfRange(all, i * w * h * 3, (i + 1) * w * h * 3) : null;
            if (f != null && i == 5) {
                try {
                    EdgeVideo.nativePush(c, Arrays.copyOf(f, f.length - 1), w, h, Double.NaN);
                } catch (EdgeVideoException e) {
                    System.out.println("error " + e.getMessage().split(":")[0]);
                }
            }
            float[] p = EdgeVideo.nativePush(c, f, w, h, i / 30.0);
            if (p != null) {
                System.out.println("prediction " + (int) p[0] + " " + EdgeVideo.nativeLabel(c, (int) p[0]) + " "
                                   + p[1] + " " + (int) p[2] + " " + (long) p[4]);
            }
        }
        EdgeVideo.nativeReset(c);
        EdgeVideo.nativeDestroy(c);
    }
}
"""


@pytest.fixture(scope="module")
def jdk() -> Path:
    proc = located("arm64_toolchain.sh", "--jni")
    return Path(re.search(r"^jdk: (.+)$", proc.stdout, flags=re.M).group(1))


@pytest.fixture(scope="module")
def jni_classes(jdk, tmp_path_factory) -> Path:
    """The Java stand-in compiled, with ``javac -h``'s JNI header ``org_edgevideo_EdgeVideo.h`` beside it."""
    out = tmp_path_factory.mktemp("jni")
    sources = {**java_stand_in(KOTLIN), "Main.java": MAIN_JAVA}
    for name, text in sources.items():
        (out / name).write_text(text)
    subprocess.run([str(jdk / "bin" / "javac"), "-h", str(out), "-d", str(out / "classes"),
                    *[str(out / n) for n in sources]], check=True, capture_output=True, text=True)
    assert (out / "org_edgevideo_EdgeVideo.h").is_file()
    return out


def _compile_jni(cxx: str, jdk: Path, jni_classes: Path, out: Path, extra: list[str]) -> subprocess.CompletedProcess:
    """Every glue source as C++17 with -Werror, the javac-generated prototypes included first."""
    sources = sorted(JNI_DIR.glob("*.cpp"))
    assert sources
    return subprocess.run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-fPIC", "-I", str(jdk / "include"),
                           "-I", str(jdk / "include" / "linux"), "-I", str(HEADER.parent),
                           "-include", str(jni_classes / "org_edgevideo_EdgeVideo.h"), *map(str, sources),
                           "-o", str(out), *extra], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("cxx", ["g++", "aarch64-linux-gnu-g++"])
def test_android_jni_glue_compiles(cxx, jdk, jni_classes, tmp_path):
    """x86_64 and aarch64 objects, against jni.h, edgevideo.h and the prototypes javac derives from EdgeVideo.kt's
    declarations (a C signature that disagrees with them is a conflicting declaration)."""
    if not shutil.which(cxx):
        missing(f"{cxx} is not installed")
    proc = _compile_jni(cxx, jdk, jni_classes, tmp_path / "edgevideo_jni.o", ["-c"])
    assert proc.returncode == 0, proc.stderr


def test_android_jni_glue_runs_in_a_jvm(jdk, jni_classes, native_bundles, tmp_path):
    """The glue linked to the x86_64 core and loaded by a JVM: predictions on a clip bundle equal the Python
    runtime's (int8, the core's default precision; no smoothing), a missing bundle and a short frame buffer arrive as
    EdgeVideoException with the core's status name, and the stream goes on after the bad frame."""
    core = build()
    lib = tmp_path / "libedgevideo_jni.so"
    proc = _compile_jni("g++", jdk, jni_classes, lib, ["-shared", f"-L{core}", "-ledgevideo", f"-Wl,-rpath,{core}"])
    assert proc.returncode == 0, proc.stderr
    frames = video(40, seed=5)
    raw = tmp_path / "frames.rgb"
    raw.write_bytes(frames.tobytes())
    bundle = native_bundles["clip"]
    proc = subprocess.run([str(jdk / "bin" / "java"), f"-Djava.library.path={tmp_path}", "-cp",
                           str(jni_classes / "classes"), "org.edgevideo.Main", str(bundle), str(raw), "48", "36"],
                          capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "LD_LIBRARY_PATH": str(core)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [x for x in lines if x.startswith("error")] == ["error EV_ERR_IO", "error EV_ERR_BAD_FRAME"]
    got = [x.split()[1:] for x in lines if x.startswith("prediction")]
    with sdk.load(bundle, backend="executorch", precision="int8") as model:
        py = StreamClassifier(model, window=8)
        want = [p for p in (py.push(f) for f in frames) if p is not None]
    assert len(got) == len(want) == 5
    for (top1, label, score, window, frame_index), p in zip(got, want):
        assert (int(top1), label, int(window), int(frame_index)) == (p.class_ids[0], p.labels[0], p.window,
                                                                    p.frame_index)
        assert abs(float(score) - float(p.probabilities[p.class_ids[0]])) <= 1e-6
