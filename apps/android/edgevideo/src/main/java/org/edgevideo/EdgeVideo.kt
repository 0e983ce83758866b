package org.edgevideo

import java.nio.ByteBuffer

/** A failure the native core reported (its ev_status name and message). Bad frames throw it too; the stream goes on. */
class EdgeVideoException(message: String) : RuntimeException(message)

data class FrameRequest(val copies: Int, val size: Int, val shortSide: Int, val window: Int, val role: Int)
data class Prediction(val label: String, val score: Float, val window: Int, val role: Int, val frameIndex: Long)
/** FASTER bundles: segments classified since the stream was created, and how many the expensive clip model saw. */
data class SegmentCounts(val segments: Long, val expensive: Long)

/** Camera pixel formats of [EdgeVideo.pushImage] (the core's ev_pixel_format). */
enum class PixelFormat(val code: Int) { RGB(0), RGBA(1), BGRA(2), NV12(3), NV21(4), I420(5) }

/** The sdk/native C API, one object per stream and thread (semantics: sdk.StreamClassifier). */
class EdgeVideo(bundleDir: String, window: Int = 0, ema: Double = 0.0, hysteresis: Double = 0.0,
                verify: Boolean = true) : AutoCloseable {
    private var handle: Long = nativeCreate(bundleDir, window, ema, hysteresis, verify)

    fun nextFrame(): FrameRequest = nativeNextFrame(handle).let { FrameRequest(it[0], it[1], it[2], it[3], it[4]) }

    /** [rgb]: width*height*3 bytes whose shorter side is nextFrame().shortSide, or null when nextFrame().copies == 0. */
    fun push(rgb: ByteArray?, width: Int, height: Int, timestampSeconds: Double = Double.NaN): Prediction? {
        val p = nativePush(handle, rgb, width, height, timestampSeconds) ?: return null
        return Prediction(nativeLabel(handle, p[0].toInt()) ?: "?", p[1], p[2].toInt(), p[3].toInt(), p[4].toLong())
    }

    /** A camera image as the camera delivers it, of any size: the core converts, rotates, resizes and crops it in
     * one pass (no RGB copy in the app). [planes]: direct ByteBuffers (read in place, never copied), [rowStrides]:
     * bytes per row of each; [rotation]: clockwise degrees that make it upright (CameraX
     * ImageInfo.rotationDegrees); [fullRange]: YUV range (Android cameras: full). Planes may be empty when
     * nextFrame().copies == 0: a dropped frame is not read. */
    fun pushImage(planes: Array<ByteBuffer>, rowStrides: IntArray, width: Int, height: Int, format: PixelFormat,
                  rotation: Int = 0, fullRange: Boolean = true, timestampSeconds: Double = Double.NaN): Prediction? =
        prediction(nativePushImage(handle, planes.getOrNull(0), planes.getOrNull(1), planes.getOrNull(2),
                                   rowStrides.getOrElse(0) { 0 }, rowStrides.getOrElse(1) { 0 },
                                   rowStrides.getOrElse(2) { 0 }, width, height, format.code, rotation, fullRange, 0,
                                   timestampSeconds))

    /** Android's YUV_420_888 (ImageProxy.planes: y, u, v buffers with their row and pixel strides) as it comes:
     * pixel stride 1 is I420; pixel stride 2 with interleaved chroma buffers is NV12 or NV21, told apart by where
     * the buffers start (the core reads them in place). */
    fun pushYuv420888(y: ByteBuffer, u: ByteBuffer, v: ByteBuffer, yRowStride: Int, uvRowStride: Int,
                      uvPixelStride: Int, width: Int, height: Int, rotation: Int = 0, fullRange: Boolean = true,
                      timestampSeconds: Double = Double.NaN): Prediction? =
        prediction(nativePushImage(handle, y, u, v, yRowStride, uvRowStride, uvRowStride, width, height, -1, rotation,
                                   fullRange, uvPixelStride, timestampSeconds))

    private fun prediction(p: FloatArray?): Prediction? = p?.let {
        Prediction(nativeLabel(handle, it[0].toInt()) ?: "?", it[1], it[2].toInt(), it[3].toInt(), it[4].toLong())
    }

    fun reset() = nativeReset(handle)

    /** Adaptive FASTER bundles: the gate's threshold from the next segment on (NaN: the bundle's own; infinity: never
     * the expensive model; -infinity: always). A bundle without a gate throws (EV_ERR_INVALID_ARGUMENT). */
    fun setGateThreshold(threshold: Double) = nativeSetGateThreshold(handle, threshold)

    /** FASTER bundles: how often the expensive model ran (zeros for other bundles); [reset] keeps counting. */
    fun segmentCounts(): SegmentCounts = nativeSegmentCounts(handle).let { SegmentCounts(it[0], it[1]) }

    override fun close() {
        if (handle != 0L) nativeDestroy(handle)
        handle = 0L
    }

    private companion object {
        init { System.loadLibrary("edgevideo_jni") }
        @JvmStatic external fun nativeCreate(dir: String, window: Int, ema: Double, hysteresis: Double, verify: Boolean): Long
        @JvmStatic external fun nativeNextFrame(h: Long): IntArray
        @JvmStatic external fun nativePush(h: Long, rgb: ByteArray?, width: Int, height: Int, timestamp: Double): FloatArray?
        @JvmStatic external fun nativePushImage(h: Long, p0: ByteBuffer?, p1: ByteBuffer?, p2: ByteBuffer?, s0: Int,
                                                s1: Int, s2: Int, width: Int, height: Int, format: Int,
                                                rotation: Int, fullRange: Boolean, uvPixelStride: Int,
                                                timestamp: Double): FloatArray?
        @JvmStatic external fun nativeLabel(h: Long, index: Int): String?
        @JvmStatic external fun nativeReset(h: Long)
        @JvmStatic external fun nativeSetGateThreshold(h: Long, threshold: Double)
        @JvmStatic external fun nativeSegmentCounts(h: Long): LongArray
        @JvmStatic external fun nativeDestroy(h: Long)
    }
}
