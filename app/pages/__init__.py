"""The dashboard pages; each shows and edits through server/ services, never holding business rules."""
