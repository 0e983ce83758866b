pluginManagement { repositories { google(); mavenCentral(); gradlePluginPortal() } }
dependencyResolutionManagement { repositories { google(); mavenCentral() } }
rootProject.name = "edgevideo-android"
include(":edgevideo") // the library: EdgeVideo.kt + the JNI glue + the native core (no Android classes in the API)
include(":app")       // the demo: CameraX -> the library -> label overlay
