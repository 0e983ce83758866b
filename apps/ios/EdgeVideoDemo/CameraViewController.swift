import AVFoundation
import UIKit

/// AVFoundation frames -> EdgeVideo (the native core) -> label overlay. The bundle ships as model.vbundle in the app.
final class CameraViewController: UIViewController, AVCaptureVideoDataOutputSampleBufferDelegate {
    private let session = AVCaptureSession()
    private let queue = DispatchQueue(label: "edgevideo.frames")  // one classifier, one thread
    private let label = UILabel()
    private var core: EdgeVideo?

    override func viewDidLoad() {
        super.viewDidLoad()
        label.frame = CGRect(x: 0, y: view.bounds.height - 80, width: view.bounds.width, height: 80)
        label.textColor = .white
        label.backgroundColor = UIColor.black.withAlphaComponent(0.6)
        label.textAlignment = .center
        do {
            let bundle = Bundle.main.url(forResource: "model", withExtension: "vbundle")!
            core = try EdgeVideo(bundle: bundle, ema: 0.5, hysteresis: 0.05, verify: true)
        } catch {
            label.text = "\(error)"
        }
        guard let camera = AVCaptureDevice.default(for: .video),
              let input = try? AVCaptureDeviceInput(device: camera) else { return }
        session.addInput(input)
        let output = AVCaptureVideoDataOutput()
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_420YpCbCr8BiPlanarFullRange]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        session.addOutput(output)
        let preview = AVCaptureVideoPreviewLayer(session: session)
        preview.frame = view.bounds
        view.layer.addSublayer(preview)
        view.addSubview(label)
        queue.async { self.session.startRunning() }
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer,
                       from connection: AVCaptureConnection) {
        guard let core = core, let pixels = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        let ts = CMSampleBufferGetPresentationTimeStamp(sampleBuffer).seconds
        do {
            // the camera's 420f buffer as it is: the core reads it in place (not at all for a frame the sampler
            // drops), converts, rotates, resizes and crops in one pass; portrait with the back camera: 90 degrees
            if let p = try core.push(pixelBuffer: pixels, rotation: 90, timestamp: ts) {
                DispatchQueue.main.async { self.label.text = String(format: "%@  %.2f", p.label, p.score) }
            }
        } catch {
            DispatchQueue.main.async { self.label.text = "\(error)" }
        }
    }
}
