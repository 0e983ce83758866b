import CoreVideo
import Foundation

/// A failure the native core reported (ev_status name + message). Bad frames throw it; the stream goes on.
struct EdgeVideoError: Error, CustomStringConvertible {
    let status: ev_status
    let message: String
    var description: String { "\(String(cString: ev_status_name(status))): \(message)" }
}

struct EdgeVideoPrediction {
    let label: String
    let score: Float
    let window: Int
    let frameIndex: Int64
}

/// sdk/native through its C API: one object per stream and thread (semantics: sdk.StreamClassifier).
final class EdgeVideo {
    private var handle: OpaquePointer?

    init(bundle: URL, window: Int32 = 0, ema: Double = 0, hysteresis: Double = 0, verify: Bool = true) throws {
        var options = ev_options()
        ev_options_default(&options)
        options.window = window
        options.ema = ema
        options.hysteresis = hysteresis
        options.smoothing = (ema > 0 || hysteresis > 0) ? 1 : 0
        options.verify_golden = verify ? 1 : 0
        let status = ev_create(bundle.path, &options, &handle)
        guard status == EV_OK else { throw EdgeVideoError(status: status, message: String(cString: ev_last_error())) }
    }

    deinit { ev_destroy(handle) }

    func nextFrame() -> ev_frame_request {
        var request = ev_frame_request()
        _ = ev_next_frame(handle, &request)
        return request
    }

    /// `rgb`: width*height*3 bytes whose shorter side is nextFrame().short_side, or nil for a dropped frame.
    func push(rgb: UnsafePointer<UInt8>?, length: Int, width: Int32, height: Int32,
              timestamp: Double = .nan) throws -> EdgeVideoPrediction? {
        var p = ev_prediction()
        let status = ev_push_frame(handle, rgb, length, width, height, timestamp, &p)
        guard status == EV_OK else { throw EdgeVideoError(status: status, message: String(cString: ev_last_error())) }
        guard p.ready == 1 else { return nil }
        let label = ev_label(handle, p.top1).map { String(cString: $0) } ?? "?"
        return EdgeVideoPrediction(label: label, score: p.score, window: Int(p.window), frameIndex: p.frame_index)
    }

    /// A camera frame as AVCaptureVideoDataOutput delivers it (kCVPixelFormatType_420YpCbCr8BiPlanarFullRange
    /// "420f", ...VideoRange "420v", or 32BGRA), read in place: the core converts, rotates (`rotation`: clockwise
    /// degrees that make it upright), resizes and crops it (ev_push_image). Not compiled on this project's Linux
    /// machines (no Swift toolchain or CoreVideo there); the C entry point it calls is tested from Python and Kotlin.
    func push(pixelBuffer: CVPixelBuffer, rotation: Int32 = 0, timestamp: Double = .nan) throws -> EdgeVideoPrediction? {
        var request = ev_frame_request()
        _ = ev_next_frame(handle, &request)
        var p = ev_prediction()
        var status: ev_status
        if request.copies == 0 {  // dropped: never locked or read
            let dropped: UnsafePointer<ev_image>? = nil
            status = ev_push_image(handle, dropped, timestamp, &p)
        } else {
            CVPixelBufferLockBaseAddress(pixelBuffer, .readOnly)
            defer { CVPixelBufferUnlockBaseAddress(pixelBuffer, .readOnly) }
            var image = ev_image()
            image.width = Int32(CVPixelBufferGetWidth(pixelBuffer))
            image.height = Int32(CVPixelBufferGetHeight(pixelBuffer))
            image.rotation = rotation
            switch CVPixelBufferGetPixelFormatType(pixelBuffer) {
            case kCVPixelFormatType_420YpCbCr8BiPlanarFullRange, kCVPixelFormatType_420YpCbCr8BiPlanarVideoRange:
                image.format = Int32(EV_PIXEL_NV12.rawValue)
                image.full_range = CVPixelBufferGetPixelFormatType(pixelBuffer)
                    == kCVPixelFormatType_420YpCbCr8BiPlanarFullRange ? 1 : 0
                image.planes.0 = CVPixelBufferGetBaseAddressOfPlane(pixelBuffer, 0)?.assumingMemoryBound(to: UInt8.self)
                image.planes.1 = CVPixelBufferGetBaseAddressOfPlane(pixelBuffer, 1)?.assumingMemoryBound(to: UInt8.self)
                image.strides.0 = Int32(CVPixelBufferGetBytesPerRowOfPlane(pixelBuffer, 0))
                image.strides.1 = Int32(CVPixelBufferGetBytesPerRowOfPlane(pixelBuffer, 1))
            case kCVPixelFormatType_32BGRA:
                image.format = Int32(EV_PIXEL_BGRA.rawValue)
                image.planes.0 = CVPixelBufferGetBaseAddress(pixelBuffer)?.assumingMemoryBound(to: UInt8.self)
                image.strides.0 = Int32(CVPixelBufferGetBytesPerRow(pixelBuffer))
            default:
                throw EdgeVideoError(status: EV_ERR_BAD_FRAME, message: "pixel format not read by the core: ask the "
                                     + "capture output for 420f, 420v or 32BGRA")
            }
            status = ev_push_image(handle, &image, timestamp, &p)
        }
        guard status == EV_OK else { throw EdgeVideoError(status: status, message: String(cString: ev_last_error())) }
        guard p.ready == 1 else { return nil }
        let label = ev_label(handle, p.top1).map { String(cString: $0) } ?? "?"
        return EdgeVideoPrediction(label: label, score: p.score, window: Int(p.window), frameIndex: p.frame_index)
    }

    func reset() { _ = ev_reset(handle) }

    /// Adaptive FASTER bundles: the gate's threshold from the next segment on (.nan: the bundle's own; .infinity:
    /// never the expensive model; -.infinity: always). A bundle without a gate throws EV_ERR_INVALID_ARGUMENT.
    func setGateThreshold(_ threshold: Double) throws {
        let status = ev_set_gate_threshold(handle, threshold)
        guard status == EV_OK else { throw EdgeVideoError(status: status, message: String(cString: ev_last_error())) }
    }

    /// FASTER bundles: segments classified since creation and how many the expensive clip model saw (zeros otherwise).
    func segmentCounts() -> (segments: Int64, expensive: Int64) {
        var segments: Int64 = 0
        var expensive: Int64 = 0
        _ = ev_segment_counts(handle, &segments, &expensive)
        return (segments, expensive)
    }
}
