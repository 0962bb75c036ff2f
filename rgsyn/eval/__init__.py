"""The evaluation protocols: re-id (mAP, CMC, mINP), verification (10-fold), bias (RFW, TO)."""
