# Fallback build (node-gyp) for platforms without a prebuild. Same sources as CMakeLists.txt:
# both read cpp/sources.json. Each instruction-set file is a static library of its own, as
# gyp cannot give one file of a target its own flags.
{
  "variables": {
    # true for the prebuilds (scripts/prebuild.js sets MOE_CPU_PORTABLE=1): libstdc++ linked in
    # and every symbol but the Node-API entry points local (cpp/addon/exports.map), so the binary
    # needs no particular libstdc++ on the system and cannot bind to the process's copy; unused
    # sections dropped, which keeps the parts of libstdc++ that need glibc > 2.34 out.
    "moe_portable%": "<!(node -p \"process.env.MOE_CPU_PORTABLE === '1'\")"
  },
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
    },
    "conditions": [
      # Never unloaded: Node dlclose()s an addon when the last Worker that loaded it exits,
      # while the process-wide native pool may still be running its code.
      ["OS == 'linux'", {
        "ldflags": ["-Wl,-z,nodelete"]
      }],
      ["OS == 'linux' and moe_portable == 'true'", {
        "cflags": ["-fvisibility=hidden"],
        "ldflags": ["-static-libstdc++", "-Wl,--version-script=<(module_root_dir)/cpp/addon/exports.map", "-Wl,--gc-sections"]
      }]
    ]
  },
  "targets": [
    {
      "target_name": "moe_cpu",
      "sources": [
        "<!@(node -p \"const s = require('./cpp/sources.json'); s.kernels.concat(s.addon).join(' ')\")"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "conditions": [
        ["target_arch == 'x64'", { "dependencies": ["moe_isa_avx2", "moe_isa_avx512", "moe_isa_amx"] }],
        ["target_arch == 'arm64' and OS != 'win'", { "dependencies": ["moe_isa_neon", "moe_isa_neon_bf16"] }],
        ["target_arch == 'arm64' and OS == 'linux'", { "dependencies": ["moe_isa_sve", "moe_isa_sve_bf16"] }]
      ]
    }
  ],
  "conditions": [
    ["target_arch == 'x64'", {
      "targets": [
        {
          "target_name": "moe_isa_avx2",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx2.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx2.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx2.flags.join(' ')\")"] }
        },
        {
          "target_name": "moe_isa_avx512",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx512.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx512.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.avx512.flags.join(' ')\")"] }
        },
        {
          "target_name": "moe_isa_amx",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.amx.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.amx.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.x64.amx.flags.join(' ')\")"] }
        }
      ]
    }],
    ["target_arch == 'arm64' and OS != 'win'", {
      "targets": [
        {
          "target_name": "moe_isa_neon",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon.flags.join(' ')\")"] }
        },
        {
          "target_name": "moe_isa_neon_bf16",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon_bf16.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon_bf16.flags.join(' ')\")"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.neon_bf16.flags.join(' ')\")"] }
        }
      ]
    }],
    ["target_arch == 'arm64' and OS == 'linux'", {
      "targets": [
        {
          "target_name": "moe_isa_sve",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.sve.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.sve.flags.join(' ')\")"]
        },
        {
          "target_name": "moe_isa_sve_bf16",
          "type": "static_library",
          "sources": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.sve_bf16.sources.join(' ')\")"],
          "cflags_cc": ["<!@(node -p \"require('./cpp/sources.json').isa.arm64.sve_bf16.flags.join(' ')\")"]
        }
      ]
    }]
  ]
}
