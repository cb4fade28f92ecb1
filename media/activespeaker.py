"""``ActiveSpeakerDetector``: who is talking, from the audio levels publishers put in RTP.

Input per interval (the ``Router`` calls ``update`` about every 300 ms): each participant's
mean ssrc-audio-level over the interval in dBov (RFC 6464 §3: the header carries -dBov,
0 is the loudest, -127 silence; ``Producer.take_audio_level``), or None if no packet came
(muted, or DTX during silence). Pure state, no clock and no I/O, so tests drive it.

Per participant the level is smoothed: it rises fast (a weighted mean, so one cough is not
enough) and falls slowly (a fixed number of dB per interval, so a breath between two
sentences keeps the speaker). Hysteresis: the current speaker keeps the floor while above
``threshold``, unless someone else is louder by ``margin`` dB for ``switch_after``
intervals in a row; when the speaker falls silent the loudest one above the threshold takes
over at once, or nobody (None).
"""

from __future__ import annotations

from collections.abc import Mapping

#: dBov of a participant who says nothing (RFC 6464: 127 means silence).
SILENCE = -127.0
#: Smoothed dBov above which someone speaks. Speech into a browser's microphone with its
#: gain control sits around -20..-40 dBov; room noise after noise suppression well below -60.
THRESHOLD = -50.0
#: How much of a louder interval the smoothed level takes at once.
ATTACK = 0.6
#: dB the smoothed level falls per quieter interval (6 dB per 300 ms: ~1 s to fall silent).
RELEASE = 6.0
#: dB a challenger must be louder than the current speaker by...
MARGIN = 6.0
#: ...for this many intervals in a row to take the floor from someone still speaking.
SWITCH_AFTER = 2


class ActiveSpeakerDetector:
    """Tracks smoothed levels and picks the loudest participant above a threshold."""

    def __init__(
        self,
        *,
        threshold: float = THRESHOLD,
        margin: float = MARGIN,
        switch_after: int = SWITCH_AFTER,
    ) -> None:
        self.threshold = threshold
        self.margin = margin
        self.switch_after = switch_after
        self.speaker: str | None = None
        self.levels: dict[str, float] = {}  # smoothed dBov per participant
        self._challenger: str | None = None
        self._challenged = 0

    def update(self, intervals: Mapping[str, float | None]) -> bool:
        """One interval's mean levels per participant; True if the speaker changed.

        Participants missing from ``intervals`` (their audio producer closed) are forgotten.
        """
        levels = self.levels
        for gone in levels.keys() - intervals.keys():
            del levels[gone]
        for participant, sample in intervals.items():
            level = SILENCE if sample is None else max(SILENCE, min(0.0, sample))
            smoothed = levels.get(participant, SILENCE)
            if level > smoothed:
                smoothed += ATTACK * (level - smoothed)
            else:
                smoothed = max(level, smoothed - RELEASE)
            levels[participant] = smoothed
        return self._choose()

    def _choose(self) -> bool:
        current = self.speaker
        loudest = max(
            (p for p in self.levels if p != current), key=self.levels.__getitem__, default=None
        )
        loudest_level = self.levels[loudest] if loudest is not None else SILENCE
        current_level = self.levels.get(current, SILENCE) if current is not None else SILENCE
        if current is not None and current_level >= self.threshold:
            # The speaker still speaks: someone else needs a clear, sustained lead.
            if loudest is not None and loudest_level >= current_level + self.margin:
                if self._challenger == loudest:
                    self._challenged += 1
                else:
                    self._challenger, self._challenged = loudest, 1
                if self._challenged >= self.switch_after:
                    return self._set(loudest)
            else:
                self._challenger, self._challenged = None, 0
            return False
        # Nobody holds the floor (or the speaker fell silent, or left).
        return self._set(loudest if loudest_level >= self.threshold else None)

    def _set(self, speaker: str | None) -> bool:
        self._challenger, self._challenged = None, 0
        if speaker == self.speaker:
            return False
        self.speaker = speaker
        return True

    def reset(self) -> bool:
        """Forget everyone (the room has no audio left); True if there was a speaker."""
        self.levels.clear()
        return self._set(None)
