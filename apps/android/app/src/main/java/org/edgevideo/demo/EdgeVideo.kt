package org.edgevideo.demo

/** A failure the native core reported (its ev_status name and message). Bad frames throw it too; the stream goes on. */
class EdgeVideoException(message: String) : RuntimeException(message)

data class FrameRequest(val copies: Int, val size: Int, val shortSide: Int, val window: Int, val role: Int)
data class Prediction(val label: String, val score: Float, val window: Int, val role: Int, val frameIndex: Long)

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

    fun reset() = nativeReset(handle)

    override fun close() {
        if (handle != 0L) nativeDestroy(handle)
        handle = 0L
    }

    private companion object {
        init { System.loadLibrary("edgevideo_jni") }
        @JvmStatic external fun nativeCreate(dir: String, window: Int, ema: Double, hysteresis: Double, verify: Boolean): Long
        @JvmStatic external fun nativeNextFrame(h: Long): IntArray
        @JvmStatic external fun nativePush(h: Long, rgb: ByteArray?, width: Int, height: Int, timestamp: Double): FloatArray?
        @JvmStatic external fun nativeLabel(h: Long, index: Int): String?
        @JvmStatic external fun nativeReset(h: Long)
        @JvmStatic external fun nativeDestroy(h: Long)
    }
}
