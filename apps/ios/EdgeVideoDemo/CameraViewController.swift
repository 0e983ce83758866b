import AVFoundation
import Accelerate
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
        output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
        output.alwaysDiscardsLateVideoFrames = true
        output.setSampleBufferDelegate(self, queue: queue)
        session.addOutput(output)
        output.connection(with: .video)?.videoOrientation = .portrait
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
        let request = core.nextFrame()
        do {
            let prediction: EdgeVideoPrediction?
            if request.copies == 0 {
                prediction = try core.push(rgb: nil, length: 0, width: 0, height: 0, timestamp: ts)  // dropped
            } else {
                let (rgb, w, h) = scaledRGB(pixels, shortSide: Int(request.short_side))
                prediction = try rgb.withUnsafeBufferPointer {
                    try core.push(rgb: $0.baseAddress, length: rgb.count, width: Int32(w), height: Int32(h),
                                  timestamp: ts)
                }
            }
            if let p = prediction {
                DispatchQueue.main.async { self.label.text = String(format: "%@  %.2f", p.label, p.score) }
            }
        } catch {
            DispatchQueue.main.async { self.label.text = "\(error)" }
        }
    }

    /// BGRA pixel buffer -> shorter side scaled to `shortSide` (vImage, high-quality resampling) -> packed RGB.
    private func scaledRGB(_ buffer: CVPixelBuffer, shortSide: Int) -> ([UInt8], Int, Int) {
        CVPixelBufferLockBaseAddress(buffer, .readOnly)
        defer { CVPixelBufferUnlockBaseAddress(buffer, .readOnly) }
        let width = CVPixelBufferGetWidth(buffer), height = CVPixelBufferGetHeight(buffer)
        let scale = Double(shortSide) / Double(min(width, height))
        let w = width <= height ? shortSide : Int((Double(width) * scale).rounded())
        let h = height < width ? shortSide : Int((Double(height) * scale).rounded())
        var src = vImage_Buffer(data: CVPixelBufferGetBaseAddress(buffer), height: vImagePixelCount(height),
                                width: vImagePixelCount(width), rowBytes: CVPixelBufferGetBytesPerRow(buffer))
        var bgra = [UInt8](repeating: 0, count: w * h * 4)
        var rgb = [UInt8](repeating: 0, count: w * h * 3)
        bgra.withUnsafeMutableBytes { bgraPtr in
            var dst = vImage_Buffer(data: bgraPtr.baseAddress, height: vImagePixelCount(h), width: vImagePixelCount(w),
                                    rowBytes: w * 4)
            vImageScale_ARGB8888(&src, &dst, nil, vImage_Flags(kvImageHighQualityResampling))
            rgb.withUnsafeMutableBytes { rgbPtr in
                var out = vImage_Buffer(data: rgbPtr.baseAddress, height: vImagePixelCount(h),
                                        width: vImagePixelCount(w), rowBytes: w * 3)
                vImageConvert_BGRA8888toRGB888(&dst, &out, vImage_Flags(kvImageNoFlags))
            }
        }
        return (rgb, w, h)
    }
}
