package org.edgevideo

import java.io.File
import java.nio.ByteBuffer
import kotlin.math.abs
import kotlin.system.exitProcess

// A JVM test of the EdgeVideo wrapper (no Android classes): the real JNI glue over the native core (x86_64 here)
// streams a bundle, and its predictions must equal the Python runtime's. Run by tests/test_kotlin.py:
//   java -Djava.library.path=DIR -cp edgevideo-test.jar org.edgevideo.EdgeVideoJvmTestKt \
//        BUNDLE FRAMES.rgb WIDTH HEIGHT EXPECTED.txt [FRAMES.nv21 CAM_WIDTH CAM_HEIGHT CAM_EXPECTED.txt]
// FRAMES.rgb: raw RGB frames whose shorter side is the bundle's short side; EXPECTED.txt: one line per prediction
// of sdk.StreamClassifier(window=8) on them, "classId label window frameIndex score". FRAMES.nv21: camera frames
// as Android's YUV_420_888 holds NV21 (Y, then V and U interleaved), stored rotated 90 degrees counter-clockwise,
// pushed with pushYuv420888 (pixel stride 2, the U buffer starting one byte after the V buffer) and rotation 90;
// CAM_EXPECTED.txt: sdk.StreamClassifier on the same sdk.CameraFrame objects. Then, optionally, GATED (an adaptive
// FASTER bundle) GATED_FRAMES.rgb GATED_WIDTH GATED_HEIGHT GATE_EXPECTED.txt: the frames pushed as RGB camera images
// at the bundle's threshold, +inf and -inf; GATE_EXPECTED.txt: per threshold "threshold segments expensive label
// score" of sdk.StreamClassifier on the same frames. Exit status 0 when every check passes; the last line says
// "N passed, M failed".

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
    val clip = EdgeVideo(bundle)
    try {
        check(statusOf { clip.setGateThreshold(0.5) } == "EV_ERR_INVALID_ARGUMENT",
              "a gate threshold for a bundle without a gate: EV_ERR_INVALID_ARGUMENT")
        check(clip.segmentCounts() == SegmentCounts(0, 0), "a clip bundle counts no segments")
    } finally {
        clip.close()
    }
    if (args.size > 9) gatePath(args[9], File(args[10]).readBytes(), args[11].toInt(), args[12].toInt(),
                                File(args[13]).readLines().filter { it.isNotBlank() }.map { it.split(" ") })
    if (args.size > 5) cameraPath(bundle, File(args[5]).readBytes(), args[6].toInt(), args[7].toInt(),
                                  File(args[8]).readLines().filter { it.isNotBlank() }.map { it.split(" ") })
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

/** Camera frames through pushYuv420888, read in place from direct buffers, against Python's predictions. */
private fun cameraPath(bundle: String, raw: ByteArray, width: Int, height: Int, expected: List<List<String>>) {
    val ySize = width * height
    val frameSize = ySize * 3 / 2
    val got = mutableListOf<Prediction>()
    val stream = EdgeVideo(bundle, window = 8)
    try {
        for (i in 0 until raw.size / frameSize) {
            val y = ByteBuffer.allocateDirect(ySize).put(raw, i * frameSize, ySize)
            val vu = ByteBuffer.allocateDirect(ySize / 2).put(raw, i * frameSize + ySize, ySize / 2)
            val v = vu.duplicate().apply { position(0) }.slice()
            val u = vu.duplicate().apply { position(1) }.slice()  // what YUV_420_888 gives for NV21 memory
            if (i == 3 && stream.nextFrame().copies > 0) {
                check(statusOf { stream.pushYuv420888(y.duplicate().apply { position(0) }.slice(), u, v, width,
                                                      width, 2, width, height + 2, rotation = 90) }
                      == "EV_ERR_BAD_FRAME", "a Y plane shorter than the image: EV_ERR_BAD_FRAME")
                check(statusOf { stream.pushYuv420888(ByteBuffer.wrap(ByteArray(ySize)), u, v, width, width, 2,
                                                      width, height, rotation = 90) } == "EV_ERR_BAD_FRAME",
                      "a heap ByteBuffer: EV_ERR_BAD_FRAME")
            }
            stream.pushYuv420888(y.apply { position(0) }, u, v, width, width, 2, width, height, rotation = 90,
                                 timestampSeconds = i / 30.0)?.let { got.add(it) }
        }
    } finally {
        stream.close()
    }
    check(got.size == expected.size && got.isNotEmpty(), "camera: ${got.size} predictions, Python gave ${expected.size}")
    for ((p, want) in got.zip(expected)) {
        println("camera prediction ${p.label} ${p.score} ${p.window} ${p.frameIndex}")
        check(p.label == want[1] && p.window == want[2].toInt() && p.frameIndex == want[3].toLong() &&
              abs(p.score - want[4].toFloat()) <= 1e-6f, "camera window ${p.window}: $p, Python: $want")
    }
}

/** An adaptive FASTER bundle at three thresholds: the segments the expensive model saw and the last prediction must
 * be the Python runtime's. */
private fun gatePath(bundle: String, raw: ByteArray, width: Int, height: Int, expected: List<List<String>>) {
    val frameBytes = width * height * 3
    for (want in expected) {
        val stream = EdgeVideo(bundle)
        var last: Prediction? = null
        try {
            if (want[0] != "bundle") stream.setGateThreshold(want[0].toDouble())
            for (i in 0 until raw.size / frameBytes) {
                val planes = if (stream.nextFrame().copies > 0)
                    arrayOf(ByteBuffer.allocateDirect(frameBytes).apply { put(raw, i * frameBytes, frameBytes); position(0) })
                else arrayOf()
                stream.pushImage(planes, intArrayOf(width * 3), width, height, PixelFormat.RGB)?.let { last = it }
            }
            val counts = stream.segmentCounts()
            println("gate ${want[0]} segments ${counts.segments} expensive ${counts.expensive} ${last?.label} ${last?.score}")
            check(counts == SegmentCounts(want[1].toLong(), want[2].toLong()), "gate ${want[0]}: $counts, Python: $want")
            val p = last
            check(p != null && p.label == want[3] && abs(p.score - want[4].toFloat()) <= 1e-5f,
                  "gate ${want[0]}: last prediction $p, Python: $want")
        } finally {
            stream.close()
        }
    }
}
