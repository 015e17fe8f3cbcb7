#!/usr/bin/env bash
# Installs the Debian tools audiolm-jax uses to build its built-in corpora, when missing:
# flite and espeak-ng (speech), fluidsynth + a General MIDI soundfont (piano), sox, libsndfile,
# and the fortune databases (an offline source of English sentences).
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -euo pipefail

PKGS=(flite espeak-ng sox fluidsynth fluid-soundfont-gm fortunes libsndfile1)
missing=()
command -v flite >/dev/null 2>&1 || missing+=(flite)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
command -v sox >/dev/null 2>&1 || missing+=(sox)
command -v fluidsynth >/dev/null 2>&1 || missing+=(fluidsynth)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || missing+=(fluid-soundfont-gm)
[ -f /usr/share/games/fortunes/fortunes ] || missing+=(fortunes)
ldconfig -p 2>/dev/null | grep -q libsndfile || missing+=(libsndfile1)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "audiolm-jax: installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "audiolm-jax: not root. Please run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${PKGS[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
