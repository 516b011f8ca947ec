"""A fuzzing campaign in one directory: `Campaign(dir, CampaignOptions(...)).run()`.

Modules, in the order data flows through them: `options` (what was asked), `candidates` (what
to run next: strategies, generation, mutation; learning from results), `stages` (executing on
the worker pool, and stages after judging), `execution` (the data of one turn), `feedbacks`
(is it new?), `objectives` (is it a failure, which bucket?), `seeds` (the corpus as the loop
sees it), `monitor` (log, status, stats), `state` (what a resume needs), `loop` (the composition).
"""

from covfuzz.campaign.loop import Campaign
from covfuzz.campaign.options import CampaignOptions
from covfuzz.lock import CampaignLocked

__all__ = ["Campaign", "CampaignOptions", "CampaignLocked"]
