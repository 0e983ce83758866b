// The app is a thin shell: CameraX frames -> JNI -> sdk/native (the tested C++ core) -> label overlay.
// EXECUTORCH_ANDROID_PREFIX: an ExecuTorch install for the ABI below (see ../README.md, "Build").
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

val executorchPrefix: String = System.getenv("EXECUTORCH_ANDROID_PREFIX")
    ?: (project.findProperty("executorchPrefix") as String?)
    ?: error("set EXECUTORCH_ANDROID_PREFIX (or -PexecutorchPrefix=...) to an ExecuTorch install for arm64-v8a")

android {
    namespace = "org.edgevideo.demo"
    compileSdk = 34
    ndkVersion = "26.3.11579264"
    defaultConfig {
        applicationId = "org.edgevideo.demo"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }
        externalNativeBuild {
            cmake {
                arguments += listOf("-DCMAKE_PREFIX_PATH=$executorchPrefix", "-DANDROID_STL=c++_shared")
                cppFlags += listOf("-std=c++17", "-fexceptions")
            }
        }
    }
    externalNativeBuild { cmake { path = file("src/main/cpp/CMakeLists.txt"); version = "3.22.1" } }
    // The bundle directory goes into assets/model.vbundle/ uncompressed (.pte files are mmapped after copying).
    androidResources { noCompress += listOf("pte", "json", "npz") }
    compileOptions { sourceCompatibility = JavaVersion.VERSION_17; targetCompatibility = JavaVersion.VERSION_17 }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    val camerax = "1.3.4"
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    implementation("androidx.appcompat:appcompat:1.7.0")
}
