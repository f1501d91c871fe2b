CREATE TABLE "speaker_profiles" (
	"participant" text PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"print" jsonb NOT NULL,
	"reference" text,
	"reference_key" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "segments" ADD COLUMN "role_source" text DEFAULT 'track' NOT NULL;--> statement-breakpoint
ALTER TABLE "tracks" ADD COLUMN "max_speakers" integer;--> statement-breakpoint
ALTER TABLE "uploads" ADD COLUMN "speakers" jsonb;