package org.edgevideo.demo

import java.io.File
import kotlin.math.abs
import kotlin.system.exitProcess

// A JVM test of the EdgeVideo wrapper (no Android classes): the real JNI glue over the native core (x86_64 here)
// streams a bundle, and its predictions must equal the Python runtime's. Run by tests/test_kotlin.py:
//   java -Djava.library.path=DIR -cp edgevideo-test.jar org.edgevideo.demo.EdgeVideoJvmTestKt \
//        BUNDLE FRAMES.rgb WIDTH HEIGHT EXPECTED.txt
// FRAMES.rgb: raw RGB frames whose shorter side is the bundle's short side; EXPECTED.txt: one line per prediction
// of sdk.StreamClassifier(window=8) on them, "classId label window frameIndex score". Exit status 0 when every check
// passes; the last line says "N passed, M failed".

private var passed = 0
private val failures = mutableListOf<String>()

private fun check(ok: Boolean, what: String) {
    if (ok) passed++ else failures.add(what)
}

/** The core's status name of the EdgeVideoException [block] throws, or null when it throws none. */
private fun statusOf(block: () -> Unit): String? = try {
    block()
    null
} catch (e: EdgeVideoException) {
    e.message?.substringBefore(":")
}

fun main(args: Array<String>) {
    val (bundle, rawPath, w, h, expectedPath) = args
    val width = w.toInt()
    val height = h.toInt()
    val raw = File(rawPath).readBytes()
    val frameBytes = width * height * 3
    val expected = File(expectedPath).readLines().filter { it.isNotBlank() }.map { it.split(" ") }

    check(statusOf { EdgeVideo("$bundle/missing.vbundle").close() } == "EV_ERR_IO", "a missing bundle: EV_ERR_IO")
    check(statusOf { EdgeVideo(bundle, window = -1).close() } == "EV_ERR_INVALID_ARGUMENT",
          "a negative window: EV_ERR_INVALID_ARGUMENT")
    val got = mutableListOf<Prediction>()
    var badFrameSent = false
    val stream = EdgeVideo(bundle, window = 8)  // AutoCloseable.use needs kotlin-stdlib-jdk7, not in kotlinc 1.3's
    try {
        for (i in 0 until raw.size / frameBytes) {
            val request = stream.nextFrame()
            val frame = if (request.copies > 0) raw.copyOfRange(i * frameBytes, (i + 1) * frameBytes) else null
            if (frame != null && i >= 5 && !badFrameSent) {  // a bad frame, then the stream goes on
                badFrameSent = true
                check(statusOf { stream.push(frame.copyOf(frame.size - 1), width, height) } == "EV_ERR_BAD_FRAME",
                      "a short frame buffer: EV_ERR_BAD_FRAME")
            }
            stream.push(frame, width, height, i / 30.0)?.let { got.add(it) }
        }
        stream.reset()
    } finally {
        stream.close()
    }
    check(badFrameSent, "a bad frame was sent")
    check(got.size == expected.size, "${got.size} predictions, Python gave ${expected.size}")
    for ((p, want) in got.zip(expected)) {
        println("prediction ${p.label} ${p.score} ${p.window} ${p.frameIndex}")
        check(p.label == want[1] && p.window == want[2].toInt() && p.frameIndex == want[3].toLong() &&
              abs(p.score - want[4].toFloat()) <= 1e-6f, "window ${p.window}: $p, Python: $want")
    }
    failures.forEach { println("FAILED $it") }
    println("${passed} passed, ${failures.size} failed")
    exitProcess(if (failures.isEmpty()) 0 else 1)
}
