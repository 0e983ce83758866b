// The Android library an app depends on: org.edgevideo.EdgeVideo (Kotlin, no Android classes), the JNI glue and the
// native core (sdk/native, the C++ sources the Linux tests build). tests/test_kotlin.py compiles this module's
// Kotlin with kotlinc and runs src/test on the JVM; Gradle itself is not run on the build machine (see ../README.md).
// EXECUTORCH_ANDROID_PREFIX: an ExecuTorch install for the ABI below (see ../README.md, "Build").
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val executorchPrefix: String = System.getenv("EXECUTORCH_ANDROID_PREFIX")
    ?: (project.findProperty("executorchPrefix") as String?)
    ?: error("set EXECUTORCH_ANDROID_PREFIX (or -PexecutorchPrefix=...) to an ExecuTorch install for arm64-v8a")

android {
    namespace = "org.edgevideo"
    compileSdk = 34
    ndkVersion = "26.3.11579264"
    defaultConfig {
        minSdk = 26
        ndk { abiFilters += listOf("arm64-v8a") }
        externalNativeBuild {
            cmake {
                arguments += listOf("-DCMAKE_PREFIX_PATH=$executorchPrefix", "-DANDROID_STL=c++_shared")
                cppFlags += listOf("-std=c++17", "-fexceptions")
            }
        }
    }
    externalNativeBuild { cmake { path = file("src/main/cpp/CMakeLists.txt"); version = "3.22.1" } }
    compileOptions { sourceCompatibility = JavaVersion.VERSION_17; targetCompatibility = JavaVersion.VERSION_17 }
    kotlinOptions { jvmTarget = "17" }
}
