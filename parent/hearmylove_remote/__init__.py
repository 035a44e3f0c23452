"""The parent's side of Hear My Love: remote CLI and the family broker's accounts."""
