"""The text frontend: a story as a parent typed it -> cleaned text -> sentences -> Kokoro phonemes
(numbers and money spelled out; English through misaki or espeak-ng, Mandarin through misaki's zh G2P)."""
