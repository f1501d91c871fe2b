/** Scripts of the synthetic consultations the corpus is spoken from: doctor and patient turns. */
export type CorpusSpeaker = 'doctor' | 'patient' | 'relative';

export interface Consultation {
  language: 'en' | 'fa' | 'ar';
  /** espeak-ng voice of the language; variants give the doctor and the patient different voices. */
  voice: string;
  turns: { speaker: CorpusSpeaker; text: string; /** Starts this long before the previous turn ends (two voices at once). */ overlapMs?: number }[];
}

/** The visits of the language consultations, one per language. */

export const CONSULTATIONS: Consultation[] = [
  {
    language: 'en',
    voice: 'en-us',
    turns: [
      { speaker: 'doctor', text: 'Good morning, I am doctor Rahimi. What brings you in today?' },
      { speaker: 'patient', text: 'Good morning doctor. I have had chest pain and shortness of breath for three days.' },
      { speaker: 'doctor', text: 'Does the pain spread to your left arm or your jaw?' },
      { speaker: 'patient', text: 'Sometimes it goes to my left shoulder, especially when I climb the stairs.' },
      { speaker: 'doctor', text: 'Do you have a history of hypertension, diabetes or high cholesterol?' },
      { speaker: 'patient', text: 'I take metformin for diabetes and lisinopril for my blood pressure.' },
      { speaker: 'doctor', text: 'Any nausea, sweating or palpitations during these episodes?' },
      { speaker: 'patient', text: 'Yes, I feel palpitations and some nausea in the evening.' },
      { speaker: 'doctor', text: 'I will order an electrocardiogram, a troponin test and a lipid panel today. We will also check your hemoglobin and kidney function.' },
      { speaker: 'patient', text: 'Should I keep taking aspirin every morning?' },
      { speaker: 'doctor', text: 'Yes, continue aspirin eighty one milligrams and avoid heavy exercise until we review the results.' },
      { speaker: 'patient', text: 'Thank you doctor, I will come back tomorrow.' },
    ],
  },
  {
    language: 'fa',
    voice: 'fa',
    turns: [
      { speaker: 'doctor', text: 'صبح بخیر، من دکتر رحیمی هستم. امروز چه مشکلی دارید؟' },
      { speaker: 'patient', text: 'سلام دکتر. سه روز است که درد قفسه سینه و تنگی نفس دارم.' },
      { speaker: 'doctor', text: 'آیا درد به بازوی چپ یا فک شما می‌رسد؟' },
      { speaker: 'patient', text: 'گاهی به شانه چپ می‌رسد، مخصوصا وقتی از پله بالا می‌روم.' },
      { speaker: 'doctor', text: 'سابقه فشار خون بالا، دیابت یا چربی خون دارید؟' },
      { speaker: 'patient', text: 'برای دیابت متفورمین و برای فشار خون لوزارتان مصرف می‌کنم.' },
      { speaker: 'doctor', text: 'هنگام درد تهوع، تعریق یا تپش قلب دارید؟' },
      { speaker: 'patient', text: 'بله، عصرها تپش قلب و کمی تهوع دارم.' },
      { speaker: 'doctor', text: 'امروز نوار قلب، آزمایش تروپونین و چربی خون درخواست می‌کنم. هموگلوبین و کارکرد کلیه را هم بررسی می‌کنیم.' },
      { speaker: 'patient', text: 'آیا آسپرین را هر روز صبح ادامه بدهم؟' },
      { speaker: 'doctor', text: 'بله، آسپرین را ادامه دهید و تا دیدن نتایج ورزش سنگین نکنید.' },
      { speaker: 'patient', text: 'ممنون دکتر، فردا برمی‌گردم.' },
    ],
  },
  {
    language: 'ar',
    voice: 'ar',
    turns: [
      { speaker: 'doctor', text: 'صباح الخير، أنا الدكتور رحيمي. ما الذي يزعجك اليوم؟' },
      { speaker: 'patient', text: 'صباح النور يا دكتور. أشعر بألم في الصدر وضيق في التنفس منذ ثلاثة أيام.' },
      { speaker: 'doctor', text: 'هل ينتشر الألم إلى ذراعك الأيسر أو إلى الفك؟' },
      { speaker: 'patient', text: 'أحيانا يصل إلى كتفي الأيسر، خاصة عندما أصعد الدرج.' },
      { speaker: 'doctor', text: 'هل لديك تاريخ من ارتفاع ضغط الدم أو السكري أو الكوليسترول؟' },
      { speaker: 'patient', text: 'أتناول الميتفورمين للسكري والليزينوبريل لضغط الدم.' },
      { speaker: 'doctor', text: 'هل تشعر بالغثيان أو التعرق أو الخفقان أثناء النوبات؟' },
      { speaker: 'patient', text: 'نعم، أشعر بالخفقان وبعض الغثيان في المساء.' },
      { speaker: 'doctor', text: 'سأطلب تخطيط القلب الكهربائي وفحص التروبونين والدهون اليوم. وسنفحص الهيموغلوبين ووظائف الكلى أيضا.' },
      { speaker: 'patient', text: 'هل أستمر في تناول الأسبرين كل صباح؟' },
      { speaker: 'doctor', text: 'نعم، استمر في الأسبرين وتجنب التمارين الشديدة حتى نراجع النتائج.' },
      { speaker: 'patient', text: 'شكرا يا دكتور، سأعود غدا.' },
    ],
  },
];

/**
 * A visit with three voices on one microphone: the patient's daughter speaks too (the patient's side of
 * the room: role patient), once over the end of the patient's turn. Only its single-track version is
 * written (`corpus/en-family/mix*`): where diarization meets more voices than expected, and two at once.
 */
export const FAMILY_VISIT: Consultation = {
  language: 'en',
  voice: 'en-us',
  turns: [
    { speaker: 'doctor', text: 'Hello, please have a seat. How can I help you today?' },
    { speaker: 'patient', text: 'I have been coughing for two weeks and I feel tired all the time.' },
    { speaker: 'relative', text: 'My mother also had a fever last night, almost thirty nine degrees.', overlapMs: 400 },
    { speaker: 'doctor', text: 'Is the cough dry, or do you bring up any sputum?' },
    { speaker: 'patient', text: 'Mostly dry, but in the morning there is some yellow phlegm.' },
    { speaker: 'relative', text: 'And she smokes about ten cigarettes a day.' },
    { speaker: 'doctor', text: 'I will listen to your lungs and order a chest x-ray and a blood count.' },
    { speaker: 'patient', text: 'Thank you doctor.' },
  ],
};
