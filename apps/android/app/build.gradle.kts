// The demo is a thin shell: CameraX frames -> the :edgevideo library (JNI -> sdk/native) -> label overlay.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "org.edgevideo.demo"
    compileSdk = 34
    defaultConfig {
        applicationId = "org.edgevideo.demo"
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }
    }
    // The bundle directory goes into assets/model.vbundle/ uncompressed (.pte files are mmapped after copying).
    androidResources { noCompress += listOf("pte", "json", "npz") }
    compileOptions { sourceCompatibility = JavaVersion.VERSION_17; targetCompatibility = JavaVersion.VERSION_17 }
    kotlinOptions { jvmTarget = "17" }
}

dependencies {
    implementation(project(":edgevideo"))
    val camerax = "1.3.4"
    implementation("androidx.camera:camera-camera2:$camerax")
    implementation("androidx.camera:camera-lifecycle:$camerax")
    implementation("androidx.camera:camera-view:$camerax")
    implementation("androidx.appcompat:appcompat:1.7.0")
}
