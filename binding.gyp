# Fallback build (node-gyp) for platforms without a prebuild. Same sources as CMakeLists.txt:
# both read cpp/sources.json. Each instruction-set file is a static library of its own, as
# gyp cannot give one file of a target its own flags.
{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
    "include_dirs": ["cpp/kernels"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "MACOSX_DEPLOYMENT_TARGET": "11.0"
    },
    "msvs_settings": {
      "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] }
    }
  },
  "targets": [
    {
      "target_name": "moe_cpu",
      "sources": [
        "<!@(node -p \"const s = require('./cpp/sources.json'); s.kernels.concat(s.addon).join(' ')\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "conditions": [
        ["target_arch == 'x64'", { "dependencies": ["moe_isa_avx2", "moe_isa_avx512"] }]
      ]
    }
  ],
  "conditions": [
    ["target_arch == 'x64'", {
      "targets": [
        {
          "target_name": "moe_isa_avx2",
          "type": "static_library",
          "sources": ["<!(node -p \"require('./cpp/sources.json').isa.x64.avx2.source\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx2.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx2.flags.join(' ')\")"] }
        },
        {
          "target_name": "moe_isa_avx512",
          "type": "static_library",
          "sources": ["<!(node -p \"require('./cpp/sources.json').isa.x64.avx512.source\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx512.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx512.flags.join(' ')\")"] }
        }
      ]
    }]
  ]
}
