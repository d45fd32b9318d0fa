"""What each process holds in memory: the configuration, the key ring, the live feeds,
the write limits and the caller of the call at hand. Below the write pipeline and the use
cases; above the ports."""
