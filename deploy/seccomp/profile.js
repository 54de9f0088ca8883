#!/usr/bin/env node
// Makes shardcast's seccomp profiles from the container runtime's default
// profile, so that what shardcast adds is exactly one rule: the three
// io_uring system calls glommio uses (io_uring_setup, io_uring_enter,
// io_uring_register). Everything else glommio calls (mlock, membarrier,
// sched_setaffinity, eventfd, timerfd ...) is already in the default.
//
//   node deploy/seccomp/profile.js refresh DEFAULT.json
//       DEFAULT.json is Docker's default profile (moby's
//       profiles/seccomp/default.json, vendored in the Docker release you
//       run); writes deploy/seccomp.json (it plus the io_uring rule) and
//       deploy/kubernetes/seccomp-shardcast.json from it.
//   node deploy/seccomp/profile.js flatten [OUT]
//       deploy/seccomp.json in the runtime-spec form that containerd's CRI
//       (Kubernetes' Localhost profiles) reads: moby's conditional rules
//       resolved for amd64 and arm64 and a container without capabilities.
//   node deploy/seccomp/profile.js deny-io-uring
//       prints deploy/seccomp.json without the io_uring rule: Docker's
//       default since 25, used by scripts/container-test.sh.
//   node deploy/seccomp/profile.js check
//       fails when deploy/seccomp.json does not hold the rule exactly once or
//       the Kubernetes profile is not what `flatten` makes from it.
'use strict';
const fs = require('fs');
const path = require('path');

const deploy = path.resolve(__dirname, '..');
const shipped = path.join(deploy, 'seccomp.json');
const kubernetes = path.join(deploy, 'kubernetes', 'seccomp-shardcast.json');

const IO_URING = ['io_uring_setup', 'io_uring_enter', 'io_uring_register'];
const RULE_COMMENT =
  'shardcast: glommio (the io_uring runtime) needs these three calls; Docker >= 25 and ' +
  'containerd >= 2.0 dropped them from the default profile (moby/moby#46762, ' +
  'containerd/containerd#9320). The only change to the default profile.';
const PROFILE_COMMENT =
  "Docker's default seccomp profile (moby profiles/seccomp/default.json as vendored in " +
  'Docker v29.7.2, github.com/moby/profiles/seccomp v0.2.3) plus one rule allowing ' +
  'io_uring_setup, io_uring_enter and io_uring_register. Refresh: take default.json from ' +
  'the Docker release you run and `node deploy/seccomp/profile.js refresh default.json` ' +
  '(README, "Deploying").';

// Kubernetes profile: the architectures it is resolved for (moby's arch
// names, as in `includes.arches`) and the seccomp architectures listed.
const TARGET_ARCHES = ['amd64', 'x86', 'x32', 'arm64', 'arm'];
const TARGET_SECCOMP = ['SCMP_ARCH_X86_64', 'SCMP_ARCH_AARCH64'];

function isIoUringRule(rule) {
  return (rule.names || []).some((n) => IO_URING.includes(n));
}

function withIoUring(defaults) {
  if (defaults.syscalls.some(isIoUringRule)) {
    throw new Error('the given default profile already names an io_uring call');
  }
  const profile = { comment: PROFILE_COMMENT, ...defaults };
  profile.syscalls = [
    ...defaults.syscalls,
    { names: IO_URING, action: 'SCMP_ACT_ALLOW', comment: RULE_COMMENT },
  ];
  return profile;
}

function withoutIoUring(profile) {
  const denied = { ...profile, syscalls: profile.syscalls.filter((r) => !isIoUringRule(r)) };
  delete denied.comment;
  return denied;
}

// A moby rule applies to a container on one of TARGET_ARCHES without any
// capability (the Kubernetes manifest drops them all) on Linux >= 5.8
// (shardcast's minimum, above every minKernel in the default profile).
function appliesWithoutCaps(rule) {
  const inc = rule.includes || {};
  const exc = rule.excludes || {};
  if (inc.caps && inc.caps.length) return false;
  if (inc.arches && !inc.arches.some((a) => TARGET_ARCHES.includes(a))) return false;
  if (exc.arches && exc.arches.some((a) => a === 'amd64' || a === 'arm64')) return false;
  if (inc.minKernel && compareKernel(inc.minKernel, '5.8') > 0) return false;
  return true;
}

function compareKernel(a, b) {
  const [a1, a2] = a.split('.').map(Number);
  const [b1, b2] = b.split('.').map(Number);
  return a1 - b1 || a2 - b2;
}

function flatten(profile) {
  const architectures = [];
  for (const entry of profile.archMap) {
    if (TARGET_SECCOMP.includes(entry.architecture)) {
      architectures.push(entry.architecture, ...entry.subArchitectures);
    }
  }
  const syscalls = profile.syscalls.filter(appliesWithoutCaps).map((rule) => {
    const out = { names: rule.names, action: rule.action };
    if (rule.errnoRet !== undefined) out.errnoRet = rule.errnoRet;
    if (rule.args) out.args = rule.args;
    return out;
  });
  return {
    defaultAction: profile.defaultAction,
    defaultErrnoRet: profile.defaultErrnoRet,
    architectures,
    syscalls,
  };
}

const read = (file) => JSON.parse(fs.readFileSync(file, 'utf8'));
const text = (json) => JSON.stringify(json, null, '\t') + '\n';

function main([command, arg]) {
  switch (command) {
    case 'refresh': {
      if (!arg) throw new Error('usage: profile.js refresh DEFAULT.json');
      fs.writeFileSync(shipped, text(withIoUring(read(arg))));
      fs.writeFileSync(kubernetes, text(flatten(read(shipped))));
      return;
    }
    case 'flatten':
      fs.writeFileSync(arg || kubernetes, text(flatten(read(shipped))));
      return;
    case 'deny-io-uring':
      process.stdout.write(text(withoutIoUring(read(shipped))));
      return;
    case 'check': {
      const profile = read(shipped);
      const rules = profile.syscalls.filter(isIoUringRule);
      if (rules.length !== 1 || rules[0].action !== 'SCMP_ACT_ALLOW' ||
          rules[0].names.length !== IO_URING.length || rules[0].includes || rules[0].excludes) {
        throw new Error(`${shipped}: expected one unconditional rule allowing exactly ${IO_URING}`);
      }
      if (fs.readFileSync(kubernetes, 'utf8') !== text(flatten(profile))) {
        throw new Error(`${kubernetes} is not what \`profile.js flatten\` makes from ${shipped}`);
      }
      console.log('seccomp profiles: ok');
      return;
    }
    default:
      throw new Error('usage: profile.js refresh DEFAULT.json | flatten [OUT] | deny-io-uring | check');
  }
}

try {
  main(process.argv.slice(2));
} catch (e) {
  console.error(`profile.js: ${e.message}`);
  process.exit(1);
}
