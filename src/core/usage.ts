// Decayed usage: the memory fair share keeps of what each member has consumed.
// An exponentially decayed integral of GPU use with half-life h, under a steady load of g GPUs,
// converges to g·h/ln2 GPU-hours; dividing by that factor turns decayed GPU-hours back into
// "GPUs used on average lately", which can be compared with an entitlement in GPUs.

/** Decays accumulated GPU-hours over `elapsedSeconds`, then adds what was used meanwhile. */
export function decayUsage(gpuHours: number, elapsedSeconds: number, halfLifeHours: number, usedGpus = 0): number {
  const h = halfLifeHours * 3600;
  const factor = Math.pow(0.5, elapsedSeconds / h);
  // Exact integral of a constant `usedGpus` under the decay over the interval.
  const accrued = (usedGpus * (1 - factor) * h) / Math.LN2 / 3600;
  return gpuHours * factor + accrued;
}

/** Decayed GPU-hours expressed as an average number of GPUs (see above). */
export function decayedAverageGpus(gpuHours: number, halfLifeHours: number): number {
  return (gpuHours * Math.LN2) / halfLifeHours;
}
