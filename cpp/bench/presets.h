// The benchmark shapes of docs/spec.md "Shapes that matter" (the same list as lib/presets.ts).
#pragma once

#include <cstddef>
#include <vector>

#include "moe_cpu.h"

namespace bench {

struct Preset {
  const char* name;
  size_t H, I, E, K;
  moe::Activation activation;
  bool interleaved;
  bool biases;
  moe::RoutingParams routing;
  // Run only when named: too large for a default run (or for this machine).
  bool explicit_only;

  size_t weights() const { return E * 3 * I * H; }
  moe::MoeConfig config(moe::WeightFormat format, unsigned threads) const;
};

const std::vector<Preset>& presets();
const Preset* find_preset(const char* name);

}  // namespace bench
