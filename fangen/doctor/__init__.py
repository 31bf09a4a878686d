"""``fangen doctor``: what a user would otherwise debug by hand, one line per check.

:mod:`~fangen.doctor.checks` (pure: facts -> verdicts), :mod:`~fangen.doctor.forward`
(pure: would the forward hook drop fan traffic), :mod:`~fangen.doctor.probe` (reads the
facts), :mod:`~fangen.doctor.dhcp` and :mod:`~fangen.doctor.icmp` (the two packets it
sends: a DHCP DISCOVER and ICMP echoes).  The doctor changes nothing.
"""
