// Node options qubesd runs with. qubesd serves many tiny calls: a small young
// generation is collected as fast and keeps resident memory about 30 MB lower
// with 1000 qubes (bench/qubesd.bench.ts measures it). They must be given on
// node's command line (V8 sizes its heap at start), so every launcher of
// qubesd (bin/qubesd's #! line, qubes-stack, the systemd unit, the tests)
// takes them from here.
export const QUBESD_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=2'];
