CREATE TABLE "session_keys" (
	"session_id" text PRIMARY KEY NOT NULL,
	"wrapped_key" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "recordings" ALTER COLUMN "duration_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "segments" ALTER COLUMN "start_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "segments" ALTER COLUMN "end_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "stt_jobs" ALTER COLUMN "start_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "stt_jobs" ALTER COLUMN "end_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "tracks" ALTER COLUMN "received_ms" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "uploads" ALTER COLUMN "duration_ms" SET DATA TYPE bigint;