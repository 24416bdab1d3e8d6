"""SpiderMultusConfig → NetworkAttachmentDefinition: the controller that writes each SMC's NAD (spec §10.3)."""
