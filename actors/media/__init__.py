"""Media helpers: ffmpeg, audio decoding and splitting, video, subtitles, sniffing, caps, glossaries."""
