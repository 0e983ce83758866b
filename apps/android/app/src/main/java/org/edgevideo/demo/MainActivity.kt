package org.edgevideo.demo

import android.Manifest
import android.content.pm.PackageManager
import android.os.Bundle
import android.widget.TextView
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.app.ActivityCompat
import androidx.core.content.ContextCompat
import java.io.File
import org.edgevideo.EdgeVideo
import org.edgevideo.EdgeVideoException
import java.util.concurrent.Executors

/** CameraX frames -> EdgeVideo (the native core) -> label overlay. The bundle ships in assets/model.vbundle/. */
class MainActivity : AppCompatActivity() {
    private val worker = Executors.newSingleThreadExecutor()  // one classifier, one thread
    private var core: EdgeVideo? = null

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            ActivityCompat.requestPermissions(this, arrayOf(Manifest.permission.CAMERA), 1)
        }
        worker.execute {
            val dir = unpackBundle("model.vbundle")
            core = EdgeVideo(dir.path, window = 0, ema = 0.5, hysteresis = 0.05, verify = true)
            runOnUiThread { startCamera() }
        }
    }

    override fun onRequestPermissionsResult(code: Int, perms: Array<out String>, results: IntArray) {
        super.onRequestPermissionsResult(code, perms, results)
        if (core != null) startCamera()
    }

    /** Assets are not files: copy the bundle directory once to app storage (the core reads a directory). */
    private fun unpackBundle(name: String): File {
        val out = File(filesDir, name)
        fun copy(path: String, to: File) {
            val children = assets.list(path).orEmpty()
            if (children.isEmpty()) {
                assets.open(path).use { input -> to.outputStream().use { input.copyTo(it) } }
            } else {
                to.mkdirs()
                children.forEach { copy("$path/$it", File(to, it)) }
            }
        }
        if (!File(out, "manifest.json").exists()) copy(name, out)
        return out
    }

    private fun startCamera() {
        val label = findViewById<TextView>(R.id.label)
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val preview = Preview.Builder().build().also {
                it.setSurfaceProvider(findViewById<PreviewView>(R.id.preview).surfaceProvider)
            }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_YUV_420_888)
                .build()
            analysis.setAnalyzer(worker) { image -> analyze(image, label) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy, label: TextView) {
        image.use {
            val c = core ?: return
            val ts = image.imageInfo.timestamp / 1e9
            val (y, u, v) = image.planes
            val prediction = try {
                // the camera's YUV_420_888 planes as they are: the core reads them in place (a frame the sampler
                // drops is not read at all), converts, rotates upright, resizes and crops in one pass
                c.pushYuv420888(y.buffer, u.buffer, v.buffer, y.rowStride, u.rowStride, u.pixelStride, image.width,
                                image.height, rotation = image.imageInfo.rotationDegrees, timestampSeconds = ts)
            } catch (e: EdgeVideoException) {
                runOnUiThread { label.text = e.message }
                null
            }
            if (prediction != null) {
                runOnUiThread { label.text = "%s  %.2f".format(prediction.label, prediction.score) }
            }
        }
    }

    override fun onDestroy() {
        worker.execute { core?.close(); core = null }
        worker.shutdown()
        super.onDestroy()
    }
}
